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
        Reserve(bytes, purpose);
        FreshAllocations++;
        // Owned by this tier, not by whatever dispose scope the caller happens to run in.
        return empty(elements, dtype: dtype, device: Device).DetachFromDisposeScope();
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
        if (UsedBytes + bytes > Budget) Trim(keepBytes: Budget - InUseBytes - bytes);
        if (InUseBytes + bytes > Budget)
            throw new TierBudgetExceededException(
                $"{purpose} needs {bytes:N0} bytes on the {Tier.ToString().ToLowerInvariant()} tier ({Device}) but only " +
                $"{Math.Max(0, Budget - InUseBytes):N0} of its {Budget:N0}-byte budget are free. " +
                (Tier == Tier.Host ? "Raise host_memory (--host-memory)." : "Raise device_memory (--device-memory) or use a smaller model or batch."));
        InUseBytes += bytes;
        PeakInUseBytes = Math.Max(PeakInUseBytes, InUseBytes);
    }

    /// <summary>True when <see cref="Acquire"/> would hand out a pooled buffer for this shape (the tier does not grow).</summary>
    public bool HasPooled(ScalarType dtype, long elements) => pool.TryGetValue((dtype, elements), out var stack) && stack.Count > 0;

    /// <summary>Takes a buffer back for reuse.</summary>
    public void Return(Tensor buffer)
    {
        long bytes = Bytes(buffer.dtype, buffer.numel());
        InUseBytes -= bytes;
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
                t.Dispose();
            }
        }
    }

    public void Dispose()
    {
        Trim();
        pool.Clear();
    }
}
