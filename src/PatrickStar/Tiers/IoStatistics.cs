using System.Diagnostics;

namespace PatrickStar.Tiers;

/// <summary>
/// Disk traffic counters, updated by the I/O thread and the consumer at once (Interlocked). The overlapped fraction is
/// the part of the I/O time the consumer did not spend waiting: 1 means disk traffic was fully hidden behind compute.
/// </summary>
public sealed class IoStatistics
{
    private long _bytesRead, _bytesWritten, _ioTicks, _readTicks, _writeTicks, _waitTicks, _reads, _writes, _cleanSkipped, _servedFromWrites;

    public long BytesRead => Interlocked.Read(ref _bytesRead);
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);
    public long Reads => Interlocked.Read(ref _reads);
    public long Writes => Interlocked.Read(ref _writes);
    /// <summary>Evictions of clean chunks, which are dropped without a write.</summary>
    public long CleanEvictionsSkipped => Interlocked.Read(ref _cleanSkipped);
    /// <summary>Reads answered from a write still queued for the same chunk, without touching the disk.</summary>
    public long ReadsServedFromPendingWrites => Interlocked.Read(ref _servedFromWrites);
    /// <summary>Seconds the I/O thread spent in reads and writes.</summary>
    public double IoSeconds => Seconds(Interlocked.Read(ref _ioTicks));
    /// <summary>The reads' part of <see cref="IoSeconds"/>.</summary>
    public double ReadSeconds => Seconds(Interlocked.Read(ref _readTicks));
    /// <summary>The writes' part of <see cref="IoSeconds"/>.</summary>
    public double WriteSeconds => Seconds(Interlocked.Read(ref _writeTicks));
    /// <summary>Seconds the consumer spent blocked on the disk: a read it needed, or writes it waited for (<see cref="IoWorker.Flush"/>).</summary>
    public double ConsumerWaitSeconds => Seconds(Interlocked.Read(ref _waitTicks));
    public double OverlappedFraction => IoSeconds <= 0 ? 1 : Math.Clamp(1 - ConsumerWaitSeconds / IoSeconds, 0, 1);

    internal void AddRead(long bytes, long ticks)
    {
        Interlocked.Add(ref _bytesRead, bytes);
        Interlocked.Add(ref _ioTicks, ticks);
        Interlocked.Add(ref _readTicks, ticks);
        Interlocked.Increment(ref _reads);
    }

    internal void AddWrite(long bytes, long ticks)
    {
        Interlocked.Add(ref _bytesWritten, bytes);
        Interlocked.Add(ref _ioTicks, ticks);
        Interlocked.Add(ref _writeTicks, ticks);
        Interlocked.Increment(ref _writes);
    }

    internal void AddWait(long ticks) => Interlocked.Add(ref _waitTicks, ticks);
    internal void AddCleanSkipped() => Interlocked.Increment(ref _cleanSkipped);
    internal void AddServedFromWrite() => Interlocked.Increment(ref _servedFromWrites);

    private static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;

    public override string ToString() =>
        $"read {BytesRead} B in {Reads}, wrote {BytesWritten} B in {Writes}, I/O {IoSeconds:0.000} s, " +
        $"consumer waited {ConsumerWaitSeconds:0.000} s (overlapped {OverlappedFraction:P0}), clean evictions skipped {CleanEvictionsSkipped}";
}
