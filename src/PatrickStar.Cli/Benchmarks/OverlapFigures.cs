using PatrickStar.Tiers;
using PatrickStar.Benchmarks;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// One disk-tier run of the overlap part, from its measured steps: the median step, the median disk traffic per step, and
/// how the step compares with the longer of compute (the same model without a disk tier) and the disk traffic at the
/// measured bandwidth. Perfect overlap gives a step of max(compute, I/O); none gives compute + I/O.
/// </summary>
public sealed record OverlapFigures(string Label, double StepSeconds, double ComputeSeconds, long BytesRead, long BytesWritten,
    double ReadBytesPerSecond, double WriteBytesPerSecond, double EngineIoSeconds, double WaitSeconds, double OverlappedFraction)
{
    /// <summary>The aim of issue 11: a step within 1.25x of max(compute, disk bytes / bandwidth).</summary>
    public const double Aim = 1.25;

    /// <summary>Seconds the step's disk traffic takes at the bandwidth measured in the same folder.</summary>
    public double IoSeconds => BytesRead / ReadBytesPerSecond + BytesWritten / WriteBytesPerSecond;

    public double Bound => Math.Max(ComputeSeconds, IoSeconds);

    /// <summary>Step over max(compute, I/O): 1 is perfect overlap; (compute + I/O) / max(compute, I/O) is none.</summary>
    public double Ratio => StepSeconds / Bound;

    /// <summary>The ratio a run with no overlap at all would show: compute and I/O one after the other.</summary>
    public double SerialRatio => (ComputeSeconds + IoSeconds) / Bound;

    /// <summary>Medians over the measured steps (their seconds and their disk figures, in step order).</summary>
    public static OverlapFigures From(string label, IReadOnlyList<double> steps, IReadOnlyList<DiskStatistics> disk, double computeSeconds,
        double readBytesPerSecond, double writeBytesPerSecond)
    {
        if (steps.Count == 0 || steps.Count != disk.Count) throw new ArgumentException($"{steps.Count} steps with {disk.Count} disk figures.");
        double Median(Func<DiskStatistics, double> f) => Measure.Median(disk.Select(f).ToList());
        return new OverlapFigures(label, Measure.Median(steps), computeSeconds, (long)Median(d => d.BytesRead), (long)Median(d => d.BytesWritten),
            readBytesPerSecond, writeBytesPerSecond, Median(d => d.IoSeconds), Median(d => d.WaitSeconds), Median(d => d.OverlappedFraction));
    }
}
