using System.Diagnostics;
using System.Runtime.InteropServices;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using Xunit;

namespace PatrickStar.Tests.Profiling;

public class PeakSamplerTests
{
    private const long Low = 1_000, High = 9_000_000;

    [Fact]
    public void CatchesAShortSpikeBetweenTwoTakes()
    {
        long value = Low;
        using var sampler = new PeakSampler(() => Volatile.Read(ref value));
        sampler.Start();
        Assert.Equal(Low, sampler.TakePeak());

        // 20 ms is ~60 default periods: robust even when the machine is busy.
        Volatile.Write(ref value, High);
        Thread.Sleep(20);
        Volatile.Write(ref value, Low);

        Assert.Equal(High, sampler.TakePeak()); // the reading now is low: the sampler saw the spike
        Assert.Equal(Low, sampler.TakePeak()); // and the window started afresh
    }

    [Fact]
    public void TakePeakIncludesTheReadingNowEvenWhenNotRunning()
    {
        long value = 42;
        using var sampler = new PeakSampler(() => value);
        Assert.Equal(42, sampler.TakePeak());
        value = 7;
        Assert.Equal(7, sampler.TakePeak());
    }

    [Fact]
    public void SeesARealNativeAllocationSpike()
    {
        const long size = 64L << 20;
        using var sampler = new PeakSampler();
        sampler.Start();
        long baseline = sampler.TakePeak();

        unsafe
        {
            // 64 MiB is above glibc's largest mmap threshold, so it is counted as soon as malloc returns.
            void* block = NativeMemory.Alloc((nuint)size);
            try { Thread.Sleep(20); }
            finally { NativeMemory.Free(block); }
        }

        long now = MemoryMeter.NativeInUse();
        long peak = sampler.TakePeak();
        Assert.True(peak - baseline >= 60L << 20,
            $"peak {Bytes.Format(peak)} should exceed baseline {Bytes.Format(baseline)} by ~64 MiB (now {Bytes.Format(now)})");
    }

    [Fact]
    public void DisposeStopsTheThread()
    {
        int calls = 0;
        var sampler = new PeakSampler(() => { Interlocked.Increment(ref calls); return 0; });
        sampler.Start();
        var clock = Stopwatch.StartNew();
        while (Volatile.Read(ref calls) < 3 && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Yield();
        Assert.True(sampler.IsRunning);

        sampler.Dispose();
        Assert.False(sampler.IsRunning);
        int afterDispose = Volatile.Read(ref calls);
        Thread.Sleep(5);
        Assert.Equal(afterDispose, Volatile.Read(ref calls));
        Assert.Throws<ObjectDisposedException>(() => sampler.Start());
        sampler.Dispose(); // twice is fine
    }

    [Fact]
    public void CanBeRestartedAfterStop()
    {
        long value = Low;
        using var sampler = new PeakSampler(() => Volatile.Read(ref value));
        sampler.Start();
        sampler.Stop();
        sampler.Start();
        Volatile.Write(ref value, High);
        Thread.Sleep(20);
        Volatile.Write(ref value, Low);
        Assert.Equal(High, sampler.TakePeak());
    }

    [Fact]
    public void AReaderFailureOnTheSamplerThreadIsReportedToTheOwner()
    {
        int calls = 0;
        var sampler = new PeakSampler(() =>
        {
            if (Interlocked.Increment(ref calls) > 2) throw new IOException("meter broke");
            return 0;
        });
        sampler.Start();
        var clock = Stopwatch.StartNew();
        while (Volatile.Read(ref calls) <= 2 && clock.Elapsed < TimeSpan.FromSeconds(10)) Thread.Yield();

        var e = Assert.Throws<IOException>(() => sampler.Stop());
        Assert.Equal("meter broke", e.Message);
        sampler.Dispose(); // does not throw
    }

    [Fact]
    public void RejectsANonPositiveInterval()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PeakSampler(() => 0, TimeSpan.Zero));
    }
}
