using PatrickStar.Profiling;

namespace PatrickStar.Memory;

/// <summary>
/// Catches the allocator's peak between two moments: a background thread polls a memory reading
/// (glibc's in-use bytes by default) and keeps the maximum until <see cref="TakePeak"/>. Only the
/// warm-up iteration runs it, so its cost there is acceptable.
/// </summary>
public sealed class PeakSampler : IDisposable
{
    private readonly Func<long> reader;
    private readonly TimeSpan interval;
    private Thread? thread;
    private volatile bool running;
    private long peak;

    public PeakSampler(Func<long>? reader = null, TimeSpan? interval = null)
    {
        this.reader = reader ?? MemoryMeter.NativeInUse;
        this.interval = interval ?? TimeSpan.FromMilliseconds(0.2);
    }

    public void Start()
    {
        if (running) return;
        running = true;
        Interlocked.Exchange(ref peak, reader());
        thread = new Thread(Poll) { IsBackground = true, Name = "pstar-peak-sampler", Priority = ThreadPriority.AboveNormal };
        thread.Start();
    }

    private void Poll()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (running)
        {
            Observe(reader());
            // Short sleeps: Thread.Sleep(0) yields without giving up the time slice for long on a busy machine.
            var next = clock.Elapsed + interval;
            while (running && clock.Elapsed < next) Thread.Sleep(0);
        }
    }

    private void Observe(long value)
    {
        long seen;
        while (value > (seen = Interlocked.Read(ref peak)))
            if (Interlocked.CompareExchange(ref peak, value, seen) == seen) break;
    }

    /// <summary>The maximum since the last call (or start), including the reading now; then resets to now.</summary>
    public long TakePeak()
    {
        long now = reader();
        Observe(now);
        return Interlocked.Exchange(ref peak, now);
    }

    public void Stop()
    {
        running = false;
        thread?.Join();
        thread = null;
    }

    public void Dispose() => Stop();
}
