using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Memory;

/// <summary>The memory tiers a chunk can live in.</summary>
public enum Tier { Device, Host, Disk }

/// <summary>A tier's byte budget was not enough; the message has the bytes needed and available.</summary>
public sealed class TierBudgetExceededException : Exception
{
    public TierBudgetExceededException(string message) : base(message) { }
}

/// <summary>
/// One memory tier: a byte budget and the chunk payload buffers it owns. Buffers are pooled by
/// (dtype, elements) and handed out again, because touching fresh memory is slow (about 1 s per
/// 256 MB on the VMs this was built on) and a GPU allocator would fragment. Pooled buffers still occupy
/// the tier, so they count against its budget; <see cref="Trim"/> gives them back.
/// </summary>
public sealed class TierMemory : IDisposable
{
    private readonly Dictionary<(ScalarType, long), Stack<Tensor>> pool = new();

    public TierMemory(Tier tier, Device device, long budget)
    {
        Tier = tier;
        Device = device;
        Budget = budget;
    }

    public Tier Tier { get; }
    public Device Device { get; }
    public long Budget { get; }

    /// <summary>Bytes of buffers handed out (resident chunk payloads).</summary>
    public long InUseBytes { get; private set; }

    /// <summary>Bytes of buffers kept for reuse.</summary>
    public long PooledBytes { get; private set; }

    public long UsedBytes => InUseBytes + PooledBytes;

    /// <summary>
    /// 0: payloads as libtorch allocates them. Otherwise (CPU tiers beside a disk tier) every new payload starts on a
    /// multiple of this many bytes and has room up to the next multiple after its end, so that an O_DIRECT read of a whole
    /// file slot lands in it without a staging buffer (see <see cref="SlotCapacity"/>).
    /// </summary>
    public int PayloadAlignment { get; set; }

    /// <summary>Bytes a payload of <paramref name="dtype"/> x <paramref name="elements"/> may be written from its start: its
    /// size rounded up to <see cref="PayloadAlignment"/> (0 without alignment, when nothing beyond the elements may be).</summary>
    public long SlotCapacity(ScalarType dtype, long elements) =>
        PayloadAlignment == 0 || Device.type != DeviceType.CPU ? 0 : (Bytes(dtype, elements) + PayloadAlignment - 1) / PayloadAlignment * PayloadAlignment;
    public long PeakInUseBytes { get; private set; }
    public long FreshAllocations { get; private set; }

    public static long Bytes(ScalarType dtype, long elements) => elements * Runtime.TensorMemory.ElementSize(dtype);


    /// <summary>A buffer of <paramref name="elements"/> owned by this tier; contents undefined.</summary>
    public Tensor Acquire(ScalarType dtype, long elements, string purpose)
    {
        long bytes = Bytes(dtype, elements);
        if (pool.TryGetValue((dtype, elements), out var stack) && stack.Count > 0)
        {
            PooledBytes -= bytes;
            InUseBytes += bytes;
            PeakInUseBytes = Math.Max(PeakInUseBytes, InUseBytes);
            return stack.Pop();
        }
        // A tier of the same memory (a CPU device beside the host) may hold a pooled buffer of this shape: chunks that move
        // between the two by change of owner leave their buffers in the other tier's pool. Taking it spares fresh pages.
        if (Sibling is { } other && other.SharesMemoryWith(this) && other.HasPooled(dtype, elements))
        {
            Reserve(bytes, purpose); // first: a refusal leaves the other tier's pool as it was
            return other.TakePooled(dtype, elements)!;
        }
        Reserve(bytes, purpose);
        FreshAllocations++;
        return NewBuffer(dtype, elements);
    }

    private Tensor NewBuffer(ScalarType dtype, long elements)
    {
        if (Pinning is { } pinning) return NewPinnedBuffer(pinning, dtype, elements);
        return SlotCapacity(dtype, elements) == 0
            ? empty(elements, dtype: dtype, device: Device).DetachFromDisposeScope() // owned by this tier, not by the caller's dispose scope
            : AlignedEmpty(dtype, elements, PayloadAlignment, Device);
    }

    /// <summary>
    /// Page-locks this tier's new buffers (host tier of a GPU engine); null: pageable. Pooled buffers stay registered;
    /// a buffer is unregistered just before it is freed.
    /// </summary>
    public HostPinning? Pinning { get; set; }

    /// <summary>A buffer on whole pages of its own (registration is by page), registered; pageable if that fails.</summary>
    private Tensor NewPinnedBuffer(HostPinning pinning, ScalarType dtype, long elements)
    {
        int alignment = Math.Max(PayloadAlignment, HostPinning.PageSize);
        var buffer = AlignedEmpty(dtype, elements, alignment, Device);
        long span = (Bytes(dtype, elements) + alignment - 1) / alignment * alignment;
        pinning.Register(Runtime.TensorMemory.DataPointer(buffer), span);
        return buffer;
    }

    /// <summary>Frees a buffer of this tier, unregistering it first when it is pinned.</summary>
    private void Free(Tensor buffer)
    {
        Pinning?.Unregister(Runtime.TensorMemory.DataPointer(buffer));
        buffer.Dispose();
    }

    /// <summary>
    /// A CPU tensor of <paramref name="elements"/> whose first element is on a multiple of <paramref name="alignment"/> bytes and
    /// whose allocation reaches at least to the next multiple after its end (a view into a slightly larger allocation); not in any dispose scope.
    /// </summary>
    public static unsafe Tensor AlignedEmpty(ScalarType dtype, long elements, int alignment, Device device)
    {
        int size = Runtime.TensorMemory.ElementSize(dtype);
        long capacity = (Bytes(dtype, elements) + alignment - 1) / alignment * alignment;
        using var raw = empty((capacity + alignment) / size, dtype: dtype, device: device);
        long address = (long)Runtime.TensorMemory.Address(raw);
        long skip = (alignment - address % alignment) % alignment / size; // libtorch aligns to 64 B at least
        return raw.narrow(0, skip, elements).DetachFromDisposeScope(); // the view keeps the whole allocation alive
    }

    /// <summary>
    /// True when this tier's buffers and <paramref name="other"/>'s are the same memory (a CPU device and the host): a
    /// chunk then changes tier by changing owner, because a copy within one memory would only cost time and fresh pages.
    /// </summary>
    public bool SharesMemoryWith(TierMemory other) => Device.type == DeviceType.CPU && other.Device.type == DeviceType.CPU;

    /// <summary>
    /// Takes <paramref name="buffer"/> over from <paramref name="from"/>, which shares this tier's memory: counted against
    /// this budget from now on and no longer against that one's; no copy, no allocation. Throws, changing nothing, when
    /// this budget cannot hold it.
    /// </summary>
    public void TakeOver(Tensor buffer, TierMemory from, string purpose)
    {
        if (!SharesMemoryWith(from)) throw new InvalidOperationException($"the {Tier} tier ({Device}) cannot take over a buffer of the {from.Tier} tier ({from.Device}): they are different memories.");
        long bytes = Bytes(buffer.dtype, buffer.numel());
        Reserve(bytes, purpose);
        from.InUseBytes -= bytes;
    }

    /// <summary>Counts <paramref name="bytes"/> more in use (pooled buffers make way first); throws when the budget cannot hold them.</summary>
    private void Reserve(long bytes, string purpose)
    {
        if (UsedBytes + bytes > Budget)
        {
            PassPooledToSibling(keepBytes: Budget - InUseBytes - bytes);
            Trim(keepBytes: Budget - InUseBytes - bytes);
        }
        if (InUseBytes + bytes > Budget)
            throw new TierBudgetExceededException(
                $"{purpose} needs {bytes:N0} bytes on the {Tier.ToString().ToLowerInvariant()} tier ({Device}) but only " +
                $"{Math.Max(0, Budget - InUseBytes):N0} of its {Budget:N0}-byte budget are free. " +
                (Tier == Tier.Host ? "Raise host_memory (--host-memory)." : "Raise device_memory (--device-memory) or use a smaller model or batch."));
        InUseBytes += bytes;
        PeakInUseBytes = Math.Max(PeakInUseBytes, InUseBytes);
    }

    /// <summary>The other tier of the same memory whose pooled buffers <see cref="Acquire"/> may take (null: none).</summary>
    public TierMemory? Sibling { get; set; }

    /// <summary>Hands pooled buffers to <see cref="Sibling"/> (same memory) while it has room in its budget, until at most
    /// <paramref name="keepBytes"/> stay pooled here: they would be freed, and the sibling touch fresh pages for its next chunk.</summary>
    private void PassPooledToSibling(long keepBytes)
    {
        if (Sibling is not { } other || !other.SharesMemoryWith(this)) return;
        foreach (var ((dtype, elements), stack) in pool)
        {
            long bytes = Bytes(dtype, elements);
            while (PooledBytes > Math.Max(0, keepBytes) && stack.Count > 0 && other.UsedBytes + bytes <= other.Budget)
            {
                PooledBytes -= bytes;
                other.Return(stack.Pop(), inUse: false);
            }
        }
    }

    /// <summary>A pooled buffer of this shape, no longer counted here; null if none.</summary>
    private Tensor? TakePooled(ScalarType dtype, long elements)
    {
        if (!pool.TryGetValue((dtype, elements), out var stack) || stack.Count == 0) return null;
        PooledBytes -= Bytes(dtype, elements);
        return stack.Pop();
    }

    /// <summary>True when <see cref="Acquire"/> would hand out a pooled buffer for this shape (the tier does not grow).</summary>
    public bool HasPooled(ScalarType dtype, long elements) => pool.TryGetValue((dtype, elements), out var stack) && stack.Count > 0;

    /// <summary>Takes a buffer back for reuse.</summary>
    public void Return(Tensor buffer) => Return(buffer, inUse: true);

    private void Return(Tensor buffer, bool inUse)
    {
        long bytes = Bytes(buffer.dtype, buffer.numel());
        if (inUse) InUseBytes -= bytes;
        var key = (buffer.dtype, buffer.numel());
        if (!pool.TryGetValue(key, out var stack)) pool[key] = stack = new Stack<Tensor>();
        stack.Push(buffer);
        PooledBytes += bytes;
    }

    /// <summary>Frees pooled buffers until at most <paramref name="keepBytes"/> stay pooled.</summary>
    public void Trim(long keepBytes = 0)
    {
        foreach (var stack in pool.Values)
        {
            while (PooledBytes > Math.Max(0, keepBytes) && stack.Count > 0)
            {
                var t = stack.Pop();
                PooledBytes -= Bytes(t.dtype, t.numel());
                Free(t);
            }
        }
    }

    public void Dispose()
    {
        Trim();
        pool.Clear();
        Pinning?.UnregisterAll(); // buffers still handed out are freed by their holders, after this tier is gone
    }
}
