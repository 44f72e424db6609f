using System.Diagnostics;
using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Read-ahead of parameter chunks: once a module has its chunks (moment m), the chunks the warm-up trace says moment
/// m + 1 uses start their host-to-device copies, so the copies overlap the module's compute; the next module's fetch
/// then only waits for them (<see cref="Complete"/>). A copy goes only into room that the placement allows at both
/// moments; when the device is full, chunks not needed before m + 2 are evicted for it first (synchronously, through
/// the mover, in OPT order), as the fetch at m + 1 would have done.
/// <para>
/// While a copy is pending the chunk stays in the host tier (its payload is the copy's source) and the device buffer
/// is counted in the device tier. Pending copies live only from the end of one module's hook to the next module's
/// fetch, within one pass (forward then forward, or backward then backward), where nothing else reads or writes the
/// chunk: a copy is never issued across the forward/backward turn or towards the optimizer step, and any copy still
/// pending when another moment begins, when the chunk is moved, or when room is short is waited for and dropped.
/// </para>
/// </summary>
internal sealed class ChunkPrefetcher(ChunkLists chunks, TierMemory device, TierMemory host, PlacementPolicy placement,
    NonModelTracer tracer, IterationCounters iteration, ChunkMover mover, IAsyncChunkCopy copier, long deviceBudget) : IDisposable
{
    private readonly Dictionary<Chunk, Pending> pending = new(ReferenceEqualityComparer.Instance);
    // Host payloads a completed fetch gave up while its copy may still read them (CUDA, pinned source): returned once read.
    private readonly List<(Tensor Source, IChunkCopyCompletion Copy)> sourcesInFlight = new();
    private List<int>[]? chunksAtMoment;

    private sealed record Pending(Tensor Buffer, IChunkCopyCompletion Copy, int ForMoment);

    /// <summary>The copy engine; replacing it waits for the copies in flight and disposes the old one.</summary>
    public IAsyncChunkCopy Copier
    {
        get => copier;
        set
        {
            CancelAll();
            copier.Dispose();
            copier = value;
        }
    }

    /// <summary>The current module has its chunks: starts the copies of those the next moment of the same pass uses.</summary>
    public void ReadAhead(bool training)
    {
        ReturnReadSources(wait: false);
        if (!training || tracer.WarmingUp || !placement.Planned || placement.IsStatic) return;
        var trace = tracer.Trace;
        int now = tracer.Moment, next = now + 1;
        if (now < 0 || next >= trace.MomentCount || trace.Moments[next].Kind != trace.Moments[now].Kind) return;
        DropAllBut(next);
        long limit = Math.Min(deviceBudget - tracer.LastNonModel,
            Math.Min(placement.AllowedChunkBytes(training, now), placement.AllowedChunkBytes(training, next)));
        foreach (int index in ChunksAt(next))
        {
            var chunk = chunks.Param[index];
            if (chunk.Tier != host || chunk.Payload is null || pending.ContainsKey(chunk)) continue;
            if (!MakeRoom(chunk, limit, now)) return;
            var buffer = device.Acquire(chunk.DType, chunk.Elements, $"read-ahead of chunk {index} for {trace.Moments[next].Kind} of {trace.Moments[next].Module}");
            pending[chunk] = new Pending(buffer, copier.Start(buffer, chunk.Payload), next);
            iteration.PrefetchBytes += chunk.Bytes;
        }
    }

    /// <summary>The chunk is needed now: if its copy is pending, waits for it and puts the chunk on the device.</summary>
    public void Complete(Chunk chunk)
    {
        if (!pending.Remove(chunk, out var p)) return;
        WaitFor(p);
        var old = chunk.Replace(p.Buffer, device, tracer.Label);
        ChunkMover.Rebind(chunk);
        if (p.Copy.SourceRead) host.Return(old);
        else sourcesInFlight.Add((old, p.Copy));
        iteration.BytesToDevice += chunk.Bytes;
        iteration.Moves++;
        iteration.PrefetchHits++;
        mover.Profiler?.ChunkEvent(ChunkEventType.Move, chunk.Kind, chunk.Index, Tier.Host, Tier.Device, chunk.Bytes);
    }

    /// <summary>A moment begins: copies meant for another moment are dropped.</summary>
    public void Arrive(int moment) => DropAllBut(moment);

    /// <summary>The chunk is about to move or change: a pending copy of it is waited for and dropped.</summary>
    public void Cancel(Chunk chunk)
    {
        if (pending.Remove(chunk, out var p)) Drop(p);
    }

    /// <summary>Drops one pending copy to give its device room back; false when none is pending.</summary>
    public bool CancelOne()
    {
        if (pending.Count == 0) return false;
        Cancel(pending.Keys.First());
        return true;
    }

    public void CancelAll()
    {
        while (CancelOne()) { }
        ReturnReadSources(wait: true);
    }

    private void ReturnReadSources(bool wait)
    {
        for (int i = sourcesInFlight.Count - 1; i >= 0; i--)
        {
            var (source, copy) = sourcesInFlight[i];
            if (wait) copy.Wait();
            else if (!copy.SourceRead) continue;
            host.Return(source);
            sourcesInFlight.RemoveAt(i);
        }
    }

    private void DropAllBut(int moment)
    {
        foreach (var chunk in pending.Where(kv => kv.Value.ForMoment != moment).Select(kv => kv.Key).ToList()) Cancel(chunk);
    }

    private void Drop(Pending p)
    {
        p.Copy.Wait(); // the buffer goes back to the pool only once nothing writes into it
        device.Return(p.Buffer);
    }

    private void WaitFor(Pending p)
    {
        if (p.Copy.IsCompleted)
        {
            p.Copy.Wait(); // returns at once; rethrows a failed copy
            return;
        }
        long start = Stopwatch.GetTimestamp();
        p.Copy.BeforeUse(); // CUDA: the compute stream waits, the host does not
        iteration.PrefetchWaitSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>
    /// Frees device room for <paramref name="chunk"/> within <paramref name="limit"/>, evicting only chunks that neither
    /// compute now nor are used at the next moment; false when that is not enough.
    /// </summary>
    private bool MakeRoom(Chunk chunk, long limit, int now)
    {
        long bytes = chunk.Bytes;
        while (device.InUseBytes + bytes > limit)
        {
            var candidates = chunks.Param.Where(c => c.Tier == device && !c.HasComputingTensor && tracer.Trace.NextUse(c.Index, now) > 1).ToList();
            if (candidates.Count == 0) return false;
            var victim = placement.ChooseVictim(candidates, tracer.Trace, now, useTrace: true);
            mover.Move(victim, host, $"eviction ahead of {tracer.Label}", ChunkEventType.Evict);
            iteration.Evictions++;
        }
        // A pooled buffer of the chunk's shape is reused without growing the tier; otherwise pooled ones make way.
        if (!device.HasPooled(chunk.DType, chunk.Elements) && device.UsedBytes + bytes > limit) device.Trim(Math.Max(0, limit - bytes - device.InUseBytes));
        return true;
    }

    /// <summary>Parameter chunks each moment of the trace uses, from the per-chunk accesses.</summary>
    private List<int> ChunksAt(int moment)
    {
        if (chunksAtMoment is null)
        {
            chunksAtMoment = Enumerable.Range(0, tracer.Trace.MomentCount).Select(_ => new List<int>()).ToArray();
            for (int i = 0; i < chunks.Param.Count; i++)
                foreach (int m in tracer.Trace.AccessesOf(i)) chunksAtMoment[m].Add(i);
        }
        return chunksAtMoment[moment];
    }

    /// <summary>Waits for the copies in flight, gives their buffers back, and stops the copy engine.</summary>
    public void Dispose()
    {
        CancelAll();
        copier.Dispose();
    }
}
