namespace PatrickStar.Tiers;

/// <summary>
/// A fixed set of equal <see cref="StagingBuffer"/>s: the bound on host memory of a streaming pass. The pool owns every
/// buffer; <see cref="Rent"/> lends one (blocking while none is free), <see cref="Return"/> takes it back. Disposing the
/// pool frees them all, lent or not, so nothing leaks when a run stops on an error.
/// </summary>
public sealed class BufferPool : IDisposable
{
    private readonly List<StagingBuffer> _all = new();
    private readonly Stack<StagingBuffer> _free = new();
    private readonly HashSet<StagingBuffer> _lent = new();
    private bool _disposed;

    public BufferPool(int count, long bytesEach)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        for (int i = 0; i < count; i++) _all.Add(new StagingBuffer(bytesEach));
        for (int i = count - 1; i >= 0; i--) _free.Push(_all[i]);
        BytesEach = _all[0].Capacity;
    }

    public int Count => _all.Count;
    public long BytesEach { get; }

    public int FreeCount
    {
        get { lock (_free) return _free.Count; }
    }

    public StagingBuffer Rent() => TryRent(1, Timeout.Infinite)![0];

    /// <summary><paramref name="count"/> buffers at once or none (so two renters cannot each hold half of what they need);
    /// null if they are not all free within <paramref name="timeoutMs"/> (0: do not wait).</summary>
    public StagingBuffer[]? TryRent(int count, int timeoutMs = 0)
    {
        if (count > _all.Count) throw new ArgumentOutOfRangeException(nameof(count), $"{count} buffers asked of a pool of {_all.Count}.");
        lock (_free)
        {
            while (_free.Count < count)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (timeoutMs == 0 || !Monitor.Wait(_free, timeoutMs)) return null;
            }
            ObjectDisposedException.ThrowIf(_disposed, this);
            var taken = new StagingBuffer[count];
            for (int i = 0; i < count; i++)
            {
                taken[i] = _free.Pop();
                _lent.Add(taken[i]);
            }
            return taken;
        }
    }

    public void Return(StagingBuffer buffer)
    {
        lock (_free)
        {
            if (_disposed) return;
            if (!_lent.Remove(buffer)) throw new InvalidOperationException("This buffer is not lent by this pool (returned twice?).");
            _free.Push(buffer);
            Monitor.PulseAll(_free);
        }
    }

    public void Dispose()
    {
        lock (_free)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var b in _all) b.Dispose();
            Monitor.PulseAll(_free);
        }
    }
}
