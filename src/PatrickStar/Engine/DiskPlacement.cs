using PatrickStar.Chunks;
using PatrickStar.Memory;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The host ↔ disk half of placement. Optimizer state (master, momentum, variance) goes to disk first when the host
/// budget cannot hold every chunk this rank keeps: it is used once per step, and <see cref="ChunkedAdam"/> streams it.
/// Parameter chunks stay in memory while the host budget allows, and leave for disk when it is full, the victim chosen
/// by OPT from the warm-up trace (least recently used during the warm-up). A chunk read back and not modified is
/// dropped without a write. Chunks whose values are needed while on disk are read into copies (<see cref="Read"/>,
/// <see cref="Write"/>), so checkpoints, norms and restores leave placement alone.
/// </summary>
internal sealed class DiskPlacement(ChunkLists chunks, TierMemory host, DiskChunkStore store, PlacementPolicy placement,
    NonModelTracer tracer, Action<Chunk> bindReleased, int readAhead)
{
    /// <summary>True when optimizer state lives on disk (the host budget cannot hold every chunk of this rank).</summary>
    public bool StateOnDisk { get; } = chunks.OwnedBytes(parameterElementBytes: 4) > host.Budget; // the widest compute type: a bound is all the decision needs

    public DiskChunkStore Store => store;

    /// <summary>The disk tier (files, I/O thread, staging buffers) when disk_dir is set, else null; refusals throw <see cref="Tiers.DiskTierRefusedException"/>.</summary>
    public static DiskPlacement? Open(ChunkEngineOptions options, ChunkLists chunks, ScalarType computeType, TierMemory host,
        PlacementPolicy placement, NonModelTracer tracer, Action<Chunk> bindReleased)
    {
        if (options.DiskDir is null) return null;
        int readAhead = options.DiskOverlap ? options.DiskReadAhead : 0;
        var store = new DiskChunkStore(chunks, computeType, options.DiskDir, options.DiskMemory, options.DiskFileOpener,
            options.DiskLog ?? Console.Error.WriteLine, readAhead, options.DiskOverlap, options.DiskSliceBytes);
        return new DiskPlacement(chunks, host, store, placement, tracer, bindReleased, readAhead);
    }

    /// <summary>The host-to-device read-ahead, if on: a parameter chunk leaving for disk first drops its pending copy.</summary>
    public ChunkPrefetcher? Prefetcher { get; set; }

    // Chunk indices being filled: a streamed build fills several at once, and none may leave before it is complete.
    private readonly HashSet<int> packing = new();

    /// <summary>Before chunk <paramref name="index"/> is packed: room on the host for all its lists.</summary>
    public void BeforePacking(int index)
    {
        if (!chunks.HasState(index)) return;
        packing.Add(index);
        long n = chunks.Layout.ChunkSize;
        MakeHostRoom(n * 4 * (chunks.Accumulating ? 5 : 4), pinned: null);
    }

    /// <summary>After chunk <paramref name="index"/> is packed: its optimizer state goes to disk when that is the plan.</summary>
    public void AfterPacking(int index)
    {
        packing.Remove(index);
        if (!StateOnDisk || !chunks.HasState(index)) return;
        foreach (var c in chunks.OptimizerGroup(index)) store.Spill(c, "packing");
    }

    /// <summary>Frees host room for <paramref name="bytes"/> more: optimizer state leaves first, then parameter chunks by OPT.</summary>
    public void MakeHostRoom(long bytes, Chunk? pinned)
    {
        while (host.InUseBytes + bytes > host.Budget)
        {
            var state = chunks.Master.Concat(chunks.Momentum).Concat(chunks.Variance)
                .FirstOrDefault(c => c.Tier == host && c != pinned && chunks.HasState(c.Index) && !packing.Contains(c.Index));
            if (state is not null)
            {
                store.Spill(state, tracer.Label);
                continue;
            }
            var candidates = chunks.Param.Where(c => c.Tier == host && c != pinned && chunks.HasState(c.Index) && !c.HasComputingTensor
                && !packing.Contains(c.Index)).ToList();
            if (candidates.Count == 0) return; // the tier's own refusal names the budget
            var victim = placement.ChooseVictim(candidates, tracer.Trace, tracer.Moment, useTrace: !tracer.WarmingUp && tracer.Moment >= 0);
            Prefetcher?.Cancel(victim); // a pending read-ahead copy reads the host payload the spill gives back
            store.Spill(victim, tracer.Label, GradientElements(victim));
            bindReleased(victim);
        }
    }

    /// <summary>The elements whose sum of squares the gradient norm will want of a parameter chunk leaving for disk: its used
    /// part when its slots hold gradients (not when fp32 gradient chunks hold them), else 0 (nothing to measure).</summary>
    private long GradientElements(Chunk c) =>
        !chunks.Accumulating && c.Kind == ChunkKind.Param && c.Tensors.Any(t => t.Gradient.Content == SlotContent.Gradient) ? chunks.Used(c.Index) : 0;

    /// <summary>Reads an on-disk chunk into <paramref name="into"/> (a CPU tier), making host room first when that is the tier.</summary>
    public void Load(Chunk chunk, TierMemory into, string purpose)
    {
        if (!chunk.OnDisk) return;
        if (into == host) MakeHostRoom(chunk.Bytes, chunk);
        store.Load(chunk, into, purpose);
        if (chunk.Kind == ChunkKind.Param) ChunkMover.Rebind(chunk);
    }

    /// <summary>After a fetch at this moment: reads ahead the on-disk parameter chunks the trace says come next.</summary>
    public void ReadAheadAfter(int moment)
    {
        if (readAhead == 0 || tracer.WarmingUp || moment < 0) return;
        var next = chunks.Param.Where(c => c.OnDisk)
            .Select(c => (Chunk: c, Next: tracer.Trace.NextUse(c.Index, moment)))
            .Where(x => x.Next != int.MaxValue)
            .OrderBy(x => x.Next).Take(readAhead);
        foreach (var (c, _) in next) store.ReadAhead(c);
    }

    /// <summary>The values of a chunk wherever it is: its payload in memory, or a copy read from disk (dispose it either way only if a copy).</summary>
    public Tensor Read(Chunk c) => c.OnDisk ? store.ReadCopy(c) : c.Payload!.narrow(0, 0, c.Elements);

    /// <summary>After <paramref name="values"/> (from <see cref="Read"/>) was modified: writes an on-disk chunk back, or marks a payload modified.</summary>
    public void Write(Chunk c, Tensor values)
    {
        if (c.OnDisk)
        {
            store.DropReadAhead(c);
            store.WriteCopy(c, values);
        }
        else c.MarkModified();
    }
}

/// <summary>A chunk's values for code that reads or changes them wherever the chunk is (checkpoints, restores, norms).</summary>
internal static class ChunkValues
{
    /// <summary>The whole chunk: a view of its payload, or a copy read from disk; dispose it.</summary>
    public static Tensor ReadValues(this DiskPlacement? disk, Chunk c) => disk is not null ? disk.Read(c) : c.Payload!.narrow(0, 0, c.Elements);

    /// <summary>The values from <see cref="ReadValues"/> were changed: written back to disk, or the payload marked modified.</summary>
    public static void WroteValues(this DiskPlacement? disk, Chunk c, Tensor values)
    {
        if (disk is not null) disk.Write(c, values);
        else c.MarkModified();
    }
}
