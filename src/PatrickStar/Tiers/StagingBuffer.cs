using System.Runtime.InteropServices;

namespace PatrickStar.Tiers;

/// <summary>
/// Host memory for one chunk on its way to or from disk: native, 4096-aligned (O_DIRECT's requirement), zeroed, and owned
/// by exactly one holder at a time, which disposes it. Capacity is rounded up to the alignment so a whole slot moves.
/// Memory is native rather than a managed array so the GC never moves it while the I/O thread or the kernel holds it.
/// </summary>
public sealed unsafe class StagingBuffer : IDisposable
{
    public const int Alignment = 4096;
    private void* _memory;
    private readonly bool _owned = true;

    public StagingBuffer(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        Capacity = RoundUp(bytes);
        _memory = NativeMemory.AlignedAlloc((nuint)Capacity, Alignment);
        NativeMemory.Clear(_memory, (nuint)Capacity);
    }

    private StagingBuffer(void* memory, long capacity)
    {
        _memory = memory;
        Capacity = capacity;
        _owned = false;
    }

    /// <summary>
    /// Memory owned by someone else (a chunk payload with room for a whole slot) seen as a buffer, so that a read lands in it
    /// directly; disposing it frees nothing. Throws unless the address is aligned and the capacity a multiple of the alignment.
    /// </summary>
    public static StagingBuffer Borrow(nint address, long capacity)
    {
        if (address % Alignment != 0 || capacity <= 0 || capacity % Alignment != 0)
            throw new ArgumentException($"{capacity} B at 0x{address:x} is not {Alignment}-aligned memory of whole {Alignment} B blocks.", nameof(address));
        return new StagingBuffer((void*)address, capacity);
    }

    /// <summary>Bytes, a multiple of <see cref="Alignment"/>.</summary>
    public long Capacity { get; }

    public nint Address => (nint)Pointer;

    public void* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_memory == null, this);
            return _memory;
        }
    }

    /// <summary>The first <paramref name="count"/> elements as a span (<paramref name="offsetBytes"/> from the start).</summary>
    public Span<T> AsSpan<T>(long count, long offsetBytes = 0) where T : unmanaged
    {
        if (offsetBytes < 0 || count < 0 || offsetBytes + count * sizeof(T) > Capacity)
            throw new ArgumentOutOfRangeException(nameof(count), $"{count} x {sizeof(T)} B at {offsetBytes} exceeds the buffer's {Capacity} B.");
        return new Span<T>((byte*)Pointer + offsetBytes, checked((int)count));
    }

    public static long RoundUp(long bytes) => (bytes + Alignment - 1) / Alignment * Alignment;

    public void Dispose()
    {
        if (_memory == null) return;
        if (_owned) NativeMemory.AlignedFree(_memory);
        _memory = null;
    }
}
