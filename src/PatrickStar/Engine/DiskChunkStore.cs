using System.Runtime.InteropServices;
using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Tiers;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The disk tier as the chunk engine uses it: one preallocated file per chunk kind (param, master, momentum, variance)
/// holding the chunks this rank owns, an <see cref="IoWorker"/> that reads ahead and writes behind, and two bounded pools of
/// staging buffers (single-chunk transfers and read-ahead; the optimizer's streamed groups). Copies between a chunk payload
/// and a staging buffer are plain memory copies, so payloads that meet the disk are CPU tensors. Fp32 gradient chunks
/// (gradient accumulation) never go to disk: they are written at every micro-batch. Without <see cref="Overlap"/> (config
/// disk_read_ahead false) nothing is read ahead and every write is waited for, so that a run shows what the overlap gains.
/// </summary>
internal sealed class DiskChunkStore : IDisposable
{
    private readonly ChunkLists chunks;
    private readonly DiskTier tier;
    private readonly string? rankDirectory;
    private readonly IoWorker worker;
    private readonly Dictionary<ChunkKind, ChunkFileStore> stores = new();
    private readonly BufferPool transfers;
    private readonly Dictionary<Chunk, ChunkRead> ahead = new(ReferenceEqualityComparer.Instance);

    /// <summary>Kinds that may live on disk.</summary>
    public static readonly ChunkKind[] Kinds = [ChunkKind.Param, ChunkKind.Master, ChunkKind.Momentum, ChunkKind.Variance];

    private const int TransferBuffers = DiskStaging.TransferBuffers;

    public const int StreamingBuffers = DiskStaging.StreamingBuffers;

    public DiskChunkStore(ChunkLists chunks, ScalarType computeType, string directory, long? budget, ChunkFileOpener? open,
        Action<string> log, int readAhead, bool overlap = true, long sliceBytes = StreamedGroups.DefaultSliceBytes)
    {
        this.chunks = chunks;
        Overlap = overlap;
        int owned = chunks.Count / chunks.Ranks;
        long n = chunks.Layout.ChunkSize;
        var bytes = new Dictionary<ChunkKind, long>
        {
            [ChunkKind.Param] = TierMemory.Bytes(computeType, n),
            [ChunkKind.Master] = n * 4, [ChunkKind.Momentum] = n * 4, [ChunkKind.Variance] = n * 4,
        };
        long need = bytes.Values.Sum(b => StagingBuffer.RoundUp(b) * owned);
        // Ranks of one process share the directory's lock (one per process): each rank gets its own folder.
        if (chunks.Ranks > 1 && Directory.Exists(directory))
        {
            rankDirectory = Path.Combine(directory, $"rank{chunks.Rank}");
            Directory.CreateDirectory(rankDirectory);
        }
        tier = DiskTier.Open(new DiskTierOptions(rankDirectory ?? directory, budget ?? need), log, open);
        try
        {
            foreach (var kind in Kinds) stores[kind] = tier.CreateStore(kind.ToString().ToLowerInvariant(), bytes[kind], owned);
            worker = new IoWorker(tier.Options.QueueCapacity);
            long slot = bytes.Values.Max();
            transfers = new BufferPool(TransferBuffers + readAhead, slot);
            // Three groups' worth (a group: master, momentum, variance and perhaps the parameters): read, update and write
            // overlap. Slices, not whole chunks: the pool stays a few tens of MiB whatever the chunk size.
            Streaming = new BufferPool(StreamingBuffers, Math.Min(slot, sliceBytes));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public IoStatistics Statistics => worker.Statistics;
    /// <summary>Disk traffic overlaps compute: reads issued ahead, dirty evictions written behind.</summary>
    public bool Overlap { get; }
    public BufferPool Streaming { get; }
    public IoWorker Worker => worker;
    public bool Direct => tier.Direct;
    public IReadOnlyList<string> StartupMessages => tier.StartupMessages;

    /// <summary>Bytes of staging buffers (host memory outside the host budget).</summary>
    public long BufferBytes => transfers.Count * transfers.BytesEach + Streaming.Count * Streaming.BytesEach;

    /// <summary>The file and slot of chunk <paramref name="c"/>: owned chunks of this rank, packed.</summary>
    public StreamedMember Member(Chunk c, bool writeBack = true) =>
        new(stores[c.Kind], c.Index / chunks.Ranks, writeBack, Runtime.TensorMemory.ElementSize(c.DType));

    /// <summary>Hold → OnDisk: a dirty payload is written behind; a clean one (its disk copy current) is dropped without a write.</summary>
    public void Spill(Chunk c, string during)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var payload = c.Payload!;
        var buffer = transfers.Rent();
        bool dirty = !c.DiskCopyCurrent;
        if (dirty) CopyOut(payload, buffer);
        var from = c.Tier!;
        var old = c.ToDisk(during);
        from.Return(old);
        var m = Member(c);
        worker.Evict(m.Store, m.Index, buffer, dirty, transfers.Return);
        if (!Overlap && dirty) worker.Flush();
    }

    /// <summary>OnDisk → Hold in <paramref name="into"/> (a CPU tier), using a read issued ahead when there is one.</summary>
    public void Load(Chunk c, TierMemory into, string purpose)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var read = ahead.Remove(c, out var early) ? early : Issue(c, transfers.Rent());
        var buffer = read.Wait();
        try
        {
            var payload = into.Acquire(c.DType, c.Elements, purpose);
            CopyIn(buffer, payload);
            c.FromDisk(payload, into);
        }
        finally
        {
            transfers.Return(buffer);
        }
    }

    /// <summary>Starts reading an on-disk chunk now, if a buffer is free, so that its <see cref="Load"/> finds it read.</summary>
    public void ReadAhead(Chunk c)
    {
        if (!Overlap || !c.OnDisk || ahead.ContainsKey(c) || ahead.Count >= transfers.Count - TransferBuffers) return;
        if (transfers.TryRent(1) is not { } buffer) return;
        ahead[c] = Issue(c, buffer[0]);
    }

    /// <summary>Forgets a read issued ahead for <paramref name="c"/> (its disk copy is about to change).</summary>
    public void DropReadAhead(Chunk c)
    {
        if (ahead.Remove(c, out var read)) transfers.Return(read.Wait());
    }

    /// <summary>Forgets every read issued ahead (before the optimizer rewrites the chunks on disk).</summary>
    public void DropReadAhead()
    {
        foreach (var c in ahead.Keys.ToList()) DropReadAhead(c);
    }

    /// <summary>A new CPU tensor with an on-disk chunk's values; the chunk stays on disk.</summary>
    public Tensor ReadCopy(Chunk c)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var buffer = Issue(c, transfers.Rent()).Wait();
        try
        {
            var copy = empty(c.Elements, dtype: c.DType);
            CopyIn(buffer, copy);
            return copy;
        }
        finally
        {
            transfers.Return(buffer);
        }
    }

    /// <summary>Replaces an on-disk chunk's values with <paramref name="values"/> (a whole CPU chunk), written behind.</summary>
    public void WriteCopy(Chunk c, Tensor values)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var buffer = transfers.Rent();
        CopyOut(values, buffer);
        var m = Member(c);
        worker.Evict(m.Store, m.Index, buffer, dirty: true, transfers.Return);
        if (!Overlap) worker.Flush();
    }

    /// <summary>Waits until every queued write is on disk; throws the first I/O error.</summary>
    public void Flush() => worker.Flush();

    private ChunkRead Issue(Chunk c, StagingBuffer buffer)
    {
        var m = Member(c);
        return worker.Read(m.Store, m.Index, buffer);
    }

    /// <summary>A CPU tensor with a staging buffer's first bytes (a copy).</summary>
    public static Tensor FromBuffer(StagingBuffer buffer, ScalarType dtype, long elements)
    {
        var t = empty(elements, dtype: dtype);
        CopyIn(buffer, t);
        return t;
    }

    public static unsafe void CopyIn(StagingBuffer from, Tensor to) =>
        NativeMemory.Copy(from.Pointer, Runtime.TensorMemory.Address(to), (nuint)TierMemory.Bytes(to.dtype, to.numel()));

    public static unsafe void CopyOut(Tensor from, StagingBuffer to) =>
        NativeMemory.Copy(Runtime.TensorMemory.Address(from), to.Pointer, (nuint)TierMemory.Bytes(from.dtype, from.numel()));

    public void Dispose()
    {
        worker?.Dispose(); // serves what is queued first
        transfers?.Dispose();
        Streaming?.Dispose();
        tier?.Dispose();
        if (rankDirectory is not null && Directory.Exists(rankDirectory) && !Directory.EnumerateFileSystemEntries(rankDirectory).Any())
            Directory.Delete(rankDirectory);
    }
}
