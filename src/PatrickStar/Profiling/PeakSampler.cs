using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace PatrickStar.Profiling;

/// <summary>
/// Catches the memory peak between two moments, which a reading taken only at the moments would
/// miss (an operator's temporaries come and go inside it). A dedicated background thread polls a
/// reading (glibc's in-use bytes by default) and keeps the maximum until <see cref="TakePeak"/>.
/// Only the warm-up iteration runs it, so its overhead there is acceptable.
/// </summary>
/// <remarks>
/// <para>How often it can poll (measured on the 2-core dev VM, .NET 10, Linux): the thread sleeps
/// with libc <c>nanosleep</c>, which wakes about 80–100 µs after the requested pause, so the default
/// 200 µs pause gives a period of ~0.3 ms (median; p99 ~0.4 ms when a core is free) for ~10% of one
/// core. When every core is busy (torch uses them all) the period stays ~0.3 ms typically but the
/// scheduler can delay a wake-up by several milliseconds; spinning would not help — it was no better
/// under load and burns a whole core. <see cref="Thread.Sleep(int)"/> has millisecond granularity
/// (~1.1 ms per call), which is why it is used only where nanosleep is unavailable.</para>
/// <para>The default reader, mallinfo2, costs ~2–3 µs on a tidy heap but walks the allocator's free
/// lists: with ~100k small free blocks it took ~17–20 ms per call, which then bounds the period.</para>
/// </remarks>
public sealed class PeakSampler : IDisposable
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMicroseconds(200);

    private readonly Func<long> _reader;
    private readonly TimeSpan _interval;
    private readonly object _lifecycle = new();
    private Thread? _thread;
    private volatile bool _stopRequested;
    private volatile ExceptionDispatchInfo? _readerFailure;
    private bool _disposed;

    // The maximum since the last TakePeak; long.MinValue = nothing observed yet.
    private long _peak = long.MinValue;

    /// <param name="reader">The reading to watch; <see cref="MemoryMeter.NativeInUse"/> when null. It is called from the sampler thread.</param>
    /// <param name="interval">The pause between two readings (default 200 µs); the actual period adds wake-up latency.</param>
    public PeakSampler(Func<long>? reader = null, TimeSpan? interval = null)
    {
        _reader = reader ?? MemoryMeter.NativeInUse;
        _interval = interval ?? DefaultInterval;
        if (_interval <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(interval), _interval, "The sampling interval must be positive.");
    }

    public TimeSpan Interval => _interval;

    public bool IsRunning => _thread is not null;

    /// <summary>Starts polling (no-op when already running). May be called again after <see cref="Stop"/>.</summary>
    public void Start()
    {
        lock (_lifecycle)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_thread is not null) return;
            _stopRequested = false;
            _thread = new Thread(Poll) { IsBackground = true, Name = "PatrickStar peak sampler" };
            _thread.Start();
        }
    }

    /// <summary>
    /// The maximum observed since the last call (or since construction), including a reading taken
    /// now; the window then starts afresh. Rethrows an exception the reader threw on the sampler thread.
    /// </summary>
    public long TakePeak()
    {
        ThrowIfReaderFailed();
        long now = _reader();
        long observed = Interlocked.Exchange(ref _peak, long.MinValue);
        // A sample read just before the exchange may land in the new window: it only makes the next
        // peak a little high, never misses one.
        return Math.Max(observed, now);
    }

    /// <summary>Stops polling and waits for the thread to end. Safe to call when not running.</summary>
    public void Stop()
    {
        JoinThread();
        ThrowIfReaderFailed();
    }

    /// <summary>Stops the thread; never throws (a reader failure is reported by Stop and TakePeak only).</summary>
    public void Dispose()
    {
        lock (_lifecycle) _disposed = true;
        JoinThread();
    }

    private void JoinThread()
    {
        Thread? thread;
        lock (_lifecycle)
        {
            thread = _thread;
            _thread = null;
            _stopRequested = true;
        }
        // Takes one pause plus one reading at most: the thread checks the flag after each.
        thread?.Join();
    }

    private void Poll()
    {
        try
        {
            while (!_stopRequested)
            {
                Observe(_reader());
                Pause(_interval);
            }
        }
        catch (Exception e)
        {
            // An exception escaping a thread would kill the process; hand it to the owner instead.
            _readerFailure = ExceptionDispatchInfo.Capture(e);
        }
    }

    private void Observe(long value)
    {
        long seen = Volatile.Read(ref _peak);
        while (value > seen)
        {
            long prior = Interlocked.CompareExchange(ref _peak, value, seen);
            if (prior == seen) return;
            seen = prior;
        }
    }

    private void ThrowIfReaderFailed() => _readerFailure?.Throw();

    // ---- Sub-millisecond sleeping ---------------------------------------------------------------------

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public nint Seconds, Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "nanosleep", SetLastError = true)]
    private static extern int NativeNanosleep(in Timespec request, IntPtr remaining);

    private static bool _nanosleepWorks = OperatingSystem.IsLinux();

    /// <summary>Sleeps for about <paramref name="pause"/>, giving the core away (unlike spinning).</summary>
    private static void Pause(TimeSpan pause)
    {
        if (_nanosleepWorks)
        {
            try
            {
                long ns = pause.Ticks * 100;
                var request = new Timespec { Seconds = (nint)(ns / 1_000_000_000), Nanoseconds = (nint)(ns % 1_000_000_000) };
                // An interrupted sleep (EINTR) just ends the pause early: one extra reading, no harm.
                NativeNanosleep(in request, IntPtr.Zero);
                return;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _nanosleepWorks = false;
            }
        }
        // Thread.Sleep rounds to whole milliseconds; a 0 ms sleep would turn the loop into a spin.
        Thread.Sleep(Math.Max(1, (int)Math.Ceiling(pause.TotalMilliseconds)));
    }
}
