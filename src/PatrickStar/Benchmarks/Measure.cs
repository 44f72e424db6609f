using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Benchmarks;

/// <summary>Medians of repeated timings after warm-up: the only way figures are reported.</summary>
public static class Measure
{
    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return 0;
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    }

    /// <summary>Runs <paramref name="action"/> warmup + reps times; returns the seconds of the timed reps.</summary>
    public static List<double> Repeat(int warmup, int reps, Action action)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new List<double>(reps);
        for (int i = 0; i < reps; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times.Add(clock.Elapsed.TotalSeconds);
        }
        return times;
    }
}

/// <summary>The matmul throughput of the compute device: the ceiling a trainer's TFLOPS is compared with.</summary>
public static class MatmulPeak
{
    /// <summary>Median GFLOPS of an n×n by n×n matmul (2n³ FLOPs) in <paramref name="dtype"/>.</summary>
    public static (double Gflops, List<double> Seconds) Run(Device device, ScalarType dtype, int n = 2048, int warmup = 2, int reps = 7)
    {
        using var scope = NewDisposeScope();
        var a = randn(n, n, dtype: dtype, device: device);
        var b = randn(n, n, dtype: dtype, device: device);
        var seconds = Measure.Repeat(warmup, reps, () =>
        {
            using var c = a.mm(b); // same-size result each time: the allocator hands back the same block
            if (device.type == DeviceType.CUDA) cuda.synchronize();
        });
        return (2.0 * n * n * n / Measure.Median(seconds) / 1e9, seconds);
    }
}
