using System.Runtime.InteropServices;
using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Tiers;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The disk tier as the chunk engine uses it: one preallocated file per chunk kind (param, master, momentum, variance)
/// holding the chunks this rank owns, an <see cref="IoWorker"/> that reads ahead and writes behind, and bounded host buffers:
/// two staging buffers for spills and copies, <see cref="DiskReadAhead"/>'s tensors, and the optimizer's slice pool. Reads
/// land in the chunk's payload itself (aligned CPU payloads: <see cref="TierMemory.PayloadAlignment"/>), so payloads that
/// meet the disk are CPU tensors; spills copy into a staging buffer, which is written behind. Fp32 gradient chunks
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
    private readonly DiskReadAhead readAheads;
    // The sum of squares of the first elements of a chunk's disk slot, taken from the buffer as the chunk was spilled dirty:
    // the gradient-norm pass then reads nothing from disk. Forgotten whenever the slot is written another way.
    private readonly Dictionary<Chunk, (long Elements, double Squares)> squaresOnDisk = new(ReferenceEqualityComparer.Instance);

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
            transfers = new BufferPool(TransferBuffers, slot);
            readAheads = new DiskReadAhead(Overlap ? readAhead : 0, computeType, n, stores[ChunkKind.Param].SlotBytes);
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
    public long BufferBytes => transfers.Count * transfers.BytesEach + readAheads.Count * readAheads.BytesEach + Streaming.Count * Streaming.BytesEach;

    /// <summary>The file and slot of chunk <paramref name="c"/>: owned chunks of this rank, packed.</summary>
    public StreamedMember Member(Chunk c, bool writeBack = true) =>
        new(stores[c.Kind], c.Index / chunks.Ranks, writeBack, Runtime.TensorMemory.ElementSize(c.DType));

    /// <summary>Hold → OnDisk: a dirty payload is written behind; a clean one (its disk copy current) is dropped without a write.
    /// <paramref name="measureElements"/> &gt; 0: the sum of squares of that many first elements written is kept for <see cref="SumOfSquares(Chunk, long)"/>.</summary>
    public void Spill(Chunk c, string during, long measureElements = 0)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var payload = c.Payload!;
        var buffer = transfers.Rent();
        bool dirty = !c.DiskCopyCurrent;
        if (dirty)
        {
            CopyOut(payload, buffer);
            squaresOnDisk.Remove(c);
            if (measureElements > 0) squaresOnDisk[c] = (measureElements, SumOfSquares(buffer, c.DType, measureElements));
        }
        var from = c.Tier!;
        var old = c.ToDisk(during);
        from.Return(old);
        var m = Member(c);
        worker.Evict(m.Store, m.Index, buffer, dirty, transfers.Return);
        if (!Overlap && dirty) worker.Flush();
    }

    /// <summary>OnDisk → Hold in <paramref name="into"/> (a CPU tier): the tensor a read issued ahead filled, or a read straight
    /// into a new payload (through a staging buffer only where the tier's payloads cannot take a whole slot).</summary>
    public void Load(Chunk c, TierMemory into, string purpose)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        if (readAheads.Take(c) is { } early)
        {
            var payload = into.Acquire(c.DType, c.Elements, purpose);
            if (readAheads.CanTake(payload))
            {
                readAheads.Give(payload); // the tier's buffer waits for a later read ahead; the chunk keeps the tensor read into
                c.FromDisk(early, into);
                return;
            }
            unsafe { NativeMemory.Copy(Runtime.TensorMemory.Address(early), Runtime.TensorMemory.Address(payload), (nuint)c.Bytes); }
            readAheads.Give(early);
            c.FromDisk(payload, into);
            return;
        }
        if (ReadIntoPayload(c, into, purpose)) return;
        var buffer = Issue(c, transfers.Rent()).Wait();
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

    /// <summary>
    /// OnDisk → Hold without a staging buffer: the slot is read straight into a new payload of <paramref name="into"/>, whose
    /// payloads start aligned with room for a whole slot (<see cref="TierMemory.PayloadAlignment"/>). False (nothing done)
    /// where they do not.
    /// </summary>
    private unsafe bool ReadIntoPayload(Chunk c, TierMemory into, string purpose)
    {
        var m = Member(c);
        if (into.SlotCapacity(c.DType, c.Elements) < m.Store.SlotBytes) return false;
        var payload = into.Acquire(c.DType, c.Elements, purpose);
        nint address = (nint)Runtime.TensorMemory.Address(payload);
        // Checked, not assumed: a read of a whole slot must not run past the payload's allocation.
        if (!DiskReadAhead.HoldsSlot(payload, m.Store.SlotBytes))
        {
            into.Return(payload);
            return false;
        }
        try
        {
            using var slot = StagingBuffer.Borrow(address, m.Store.SlotBytes);
            worker.Read(m.Store, m.Index, slot).Wait(); // the chunk is used only once its read completed
        }
        catch
        {
            into.Return(payload);
            throw;
        }
        c.FromDisk(payload, into);
        return true;
    }

    /// <summary>Starts reading an on-disk chunk now, if a read-ahead tensor is free, so that its <see cref="Load"/> finds it read.</summary>
    public void ReadAhead(Chunk c)
    {
        if (Overlap && c.OnDisk) readAheads.TryIssue(c, buffer => Issue(c, buffer));
    }

    /// <summary>Forgets a read issued ahead for <paramref name="c"/> (its disk copy is about to change).</summary>
    public void DropReadAhead(Chunk c) => readAheads.Drop(c);

    /// <summary>Forgets every read issued ahead (before the optimizer rewrites the chunks on disk).</summary>
    public void DropReadAhead() => readAheads.DropAll();

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

    /// <summary>
    /// The sum of squares of an on-disk chunk's first <paramref name="elements"/> (a gradient norm's part): the figure taken
    /// when it was spilled, or else computed in a staging buffer it is read into (no tensor allocated, nothing copied).
    /// </summary>
    public double SumOfSquares(Chunk c, long elements)
    {
        if (squaresOnDisk.TryGetValue(c, out var known) && known.Elements == elements) return known.Squares;
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var buffer = Issue(c, transfers.Rent()).Wait();
        try
        {
            return SumOfSquares(buffer, c.DType, elements);
        }
        finally
        {
            transfers.Return(buffer);
        }
    }

    /// <summary>Forgets every sum of squares taken at a spill (before the optimizer rewrites the chunks on disk).</summary>
    public void ForgetSumsOfSquares() => squaresOnDisk.Clear();

    private static unsafe double SumOfSquares(StagingBuffer buffer, ScalarType dtype, long elements) =>
        Optimizer.SquaredNormKernel.SumOfSquares(buffer.Pointer, Optimizer.KernelAdam.ElementOf(dtype), elements, threads: Optimizer.KernelAdam.Threads);

    /// <summary>Replaces an on-disk chunk's values with <paramref name="values"/> (a whole CPU chunk), written behind.</summary>
    public void WriteCopy(Chunk c, Tensor values)
    {
        worker.ThrowIfFaulted(); // before renting: after a fault no buffer comes back
        var buffer = transfers.Rent();
        CopyOut(values, buffer);
        squaresOnDisk.Remove(c);
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
        readAheads?.Dispose();
        transfers?.Dispose();
        Streaming?.Dispose();
        tier?.Dispose();
        if (rankDirectory is not null && Directory.Exists(rankDirectory) && !Directory.EnumerateFileSystemEntries(rankDirectory).Any())
            Directory.Delete(rankDirectory);
    }
}
