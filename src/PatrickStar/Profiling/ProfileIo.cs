namespace PatrickStar.Profiling;

/// <summary>One iteration's disk traffic (runs with a disk tier only).</summary>
/// <param name="ReadSeconds">Seconds the I/O thread spent reading.</param>
/// <param name="WriteSeconds">Seconds the I/O thread spent writing.</param>
/// <param name="WaitSeconds">Seconds compute was blocked on a read it needed.</param>
/// <param name="Direct">O_DIRECT (true) or buffered (false) I/O.</param>
public sealed record ProfileIo(int Iteration, long BytesRead, long BytesWritten, double ReadSeconds, double WriteSeconds, double WaitSeconds, bool Direct)
{
    public double IoSeconds => ReadSeconds + WriteSeconds;
}
