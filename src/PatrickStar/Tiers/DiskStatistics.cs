using PatrickStar.Profiling;

namespace PatrickStar.Tiers;

/// <summary>
/// Disk traffic over a stretch of a run (one iteration, or the whole run): what the engine reports beside its chunk figures,
/// and what a profile records per iteration. Filled from <see cref="IoStatistics"/> by <see cref="DiskIterationMeter"/>.
/// </summary>
/// <param name="ReadSeconds">Seconds the I/O thread spent reading.</param>
/// <param name="WriteSeconds">Seconds the I/O thread spent writing.</param>
/// <param name="WaitSeconds">Seconds the consumer (compute) was blocked on the disk: reads it needed, writes it waited for.</param>
/// <param name="Direct">O_DIRECT (true) or buffered (false) I/O.</param>
public sealed record DiskStatistics(long BytesRead, long BytesWritten, double ReadSeconds, double WriteSeconds, double WaitSeconds, bool Direct)
{
    public double IoSeconds => ReadSeconds + WriteSeconds;

    /// <summary>The part of the I/O time compute did not wait for: 1 when disk traffic was fully hidden, 0 when compute
    /// waited for all of it. 1 when there was no I/O.</summary>
    public double OverlappedFraction => IoSeconds <= 0 ? 1 : Math.Clamp(1 - WaitSeconds / IoSeconds, 0, 1);

    public string Mode => Direct ? "direct" : "buffered";

    /// <summary>The counters so far.</summary>
    public static DiskStatistics From(IoStatistics io, bool direct) =>
        new(io.BytesRead, io.BytesWritten, io.ReadSeconds, io.WriteSeconds, io.ConsumerWaitSeconds, direct);

    /// <summary>What happened since <paramref name="earlier"/> (a snapshot of the same counters).</summary>
    public DiskStatistics Since(DiskStatistics earlier) =>
        new(BytesRead - earlier.BytesRead, BytesWritten - earlier.BytesWritten, ReadSeconds - earlier.ReadSeconds,
            WriteSeconds - earlier.WriteSeconds, WaitSeconds - earlier.WaitSeconds, Direct);

    /// <summary>The figures under their metrics-file names, in a fixed order.</summary>
    public IEnumerable<KeyValuePair<string, double>> Named()
    {
        yield return new("disk_bytes_read", BytesRead);
        yield return new("disk_bytes_written", BytesWritten);
        yield return new("disk_read_seconds", ReadSeconds);
        yield return new("disk_write_seconds", WriteSeconds);
        yield return new("disk_wait_seconds", WaitSeconds);
        yield return new("disk_overlapped_fraction", OverlappedFraction);
        yield return new("disk_direct_io", Direct ? 1 : 0);
    }

    /// <summary>One line for the console: bytes each way, I/O time, waits and the overlapped fraction.</summary>
    public override string ToString() =>
        $"disk ({Mode}): read {Bytes.Format(BytesRead)} in {ReadSeconds:0.000} s, wrote {Bytes.Format(BytesWritten)} in {WriteSeconds:0.000} s, " +
        $"compute waited {WaitSeconds:0.000} s, {OverlappedFraction * 100:0}% of the I/O time overlapped";
}

/// <summary>
/// Turns the disk tier's running counters into per-iteration figures: call <see cref="EndIteration"/> when an iteration ends.
/// It returns that iteration's <see cref="DiskStatistics"/> and records it into the profile when one is attached.
/// </summary>
public sealed class DiskIterationMeter
{
    private readonly IoStatistics _io;
    private readonly bool _direct;
    private DiskStatistics _last;

    public DiskIterationMeter(IoStatistics io, bool direct)
    {
        _io = io;
        _direct = direct;
        _last = DiskStatistics.From(io, direct);
    }

    public DiskStatistics EndIteration(ProfileRecorder? recorder = null)
    {
        var now = DiskStatistics.From(_io, _direct);
        var iteration = now.Since(_last);
        _last = now;
        recorder?.Io(iteration.BytesRead, iteration.BytesWritten, iteration.ReadSeconds, iteration.WriteSeconds, iteration.WaitSeconds, _direct);
        return iteration;
    }
}
