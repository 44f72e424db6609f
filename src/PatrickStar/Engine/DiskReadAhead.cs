using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Tiers;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Reads issued ahead of parameter chunks on disk, each straight into a tensor shaped like the chunk's payload (aligned,
/// with room for a whole file slot). When the chunk is loaded, the tensor read into becomes its payload and the tier's
/// buffer takes its place here (<see cref="Give"/>), so a read-ahead chunk reaches its tier without a copy. A fixed number
/// of such tensors (host memory outside the budgets; disposed with this): at most that many reads ahead at once.
/// </summary>
internal sealed class DiskReadAhead : IDisposable
{
    private readonly Stack<Tensor> free = new();
    private readonly Dictionary<Chunk, (ChunkRead Read, Tensor Into)> pending = new(ReferenceEqualityComparer.Instance);
    private readonly ScalarType dtype;
    private readonly long elements;

    public DiskReadAhead(int count, ScalarType dtype, long elements, long slotBytes)
    {
        this.dtype = dtype;
        this.elements = elements;
        SlotBytes = slotBytes;
        Count = count;
        for (int i = 0; i < count; i++) free.Push(TierMemory.AlignedEmpty(dtype, elements, StagingBuffer.Alignment, CPU));
        BytesEach = count == 0 ? 0 : Runtime.TensorMemory.BytesFromStart(free.Peek());
    }

    public int Count { get; }
    public long SlotBytes { get; }
    /// <summary>Bytes of one tensor from its first element to the end of its allocation (at least a slot).</summary>
    public long BytesEach { get; }

    public bool Has(Chunk c) => pending.ContainsKey(c);

    /// <summary>Starts <paramref name="read"/>ing chunk <paramref name="c"/> into a free tensor; false when none is free or the chunk is not of this shape.</summary>
    public bool TryIssue(Chunk c, Func<StagingBuffer, ChunkRead> read)
    {
        if (pending.ContainsKey(c) || free.Count == 0 || c.DType != dtype || c.Elements != elements) return false;
        var into = free.Pop();
        try
        {
            pending[c] = (read(StagingBuffer.Borrow((nint)Runtime.TensorMemory.DataPointer(into), SlotBytes)), into);
        }
        catch
        {
            free.Push(into);
            throw;
        }
        return true;
    }

    /// <summary>The tensor holding chunk <paramref name="c"/>'s values once its read completed (blocks until then), or null
    /// if none was issued. The caller owns it and gives a tensor of the same shape back (<see cref="Give"/>).</summary>
    public Tensor? Take(Chunk c)
    {
        if (!pending.Remove(c, out var p)) return null;
        try
        {
            p.Read.Wait();
        }
        catch
        {
            free.Push(p.Into);
            throw;
        }
        return p.Into;
    }

    /// <summary>True when <paramref name="t"/> can take a read ahead: this shape, aligned, with room for a whole slot.</summary>
    public bool CanTake(Tensor t) => t.dtype == dtype && t.numel() == elements && HoldsSlot(t, SlotBytes);

    /// <summary>Takes <paramref name="t"/> (from <see cref="Take"/>, or a tier's buffer that passed <see cref="CanTake"/>) as a free tensor.</summary>
    public void Give(Tensor t) => free.Push(t);

    /// <summary>Forgets the read ahead of <paramref name="c"/>, if any (waiting for it to finish with its tensor).</summary>
    public void Drop(Chunk c)
    {
        if (Take(c) is { } t) free.Push(t);
    }

    public void DropAll()
    {
        foreach (var c in pending.Keys.ToList()) Drop(c);
    }

    /// <summary>Aligned for O_DIRECT, with at least <paramref name="slotBytes"/> of its allocation from its first element on.</summary>
    public static bool HoldsSlot(Tensor t, long slotBytes) =>
        t.device_type == TorchSharp.DeviceType.CPU && Runtime.TensorMemory.DataPointer(t) % StagingBuffer.Alignment == 0
        && Runtime.TensorMemory.BytesFromStart(t) >= slotBytes;

    /// <summary>Frees the tensors; reads still queued are waited for first (the I/O thread writes into them).</summary>
    public void Dispose()
    {
        foreach (var (read, into) in pending.Values)
        {
            try { read.Wait(); } catch (Exception e) when (e is IOException or ObjectDisposedException) { }
            into.Dispose();
        }
        pending.Clear();
        while (free.Count > 0) free.Pop().Dispose();
    }
}
