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
    /// <summary>
    /// Median GFLOPS of an n×n by n×n matmul (2n³ FLOPs) in <paramref name="dtype"/>. Some dtypes crawl on
    /// some CPUs (bf16 without AVX-512 BF16: ~0.3 GFLOPS, a minute for one 2048³ product), so the size is
    /// halved until a product fits a third of <paramref name="budgetSeconds"/>, and repetitions are cut to
    /// the budget (at least one). The size actually measured is returned.
    /// </summary>
    public static (double Gflops, int N, List<double> Seconds) Run(Device device, ScalarType dtype, int n = 2048, int reps = 7, double budgetSeconds = 20)
    {
        using var scope = NewDisposeScope();
        void Multiply(Tensor x, Tensor y)
        {
            using var c = x.mm(y); // same-size result each time: the allocator hands back the same block
            if (device.type == DeviceType.CUDA) cuda.synchronize();
        }
        // Warm the kernel (oneDNN JIT, thread pool) on a small product, then time it to size the real run.
        // The fastest of a few probes: one slow sample (a scheduling hiccup) must not shrink the real run.
        const int probe = 512;
        var small = randn(probe, probe, dtype: dtype, device: device);
        Multiply(small, small);
        double probeSeconds = Measure.Repeat(0, 1, () => Multiply(small, small))[0];
        if (probeSeconds * 8 < budgetSeconds / 3) probeSeconds = Measure.Repeat(0, 3, () => Multiply(small, small)).Min();
        while (n > probe && probeSeconds * Math.Pow((double)n / probe, 3) > budgetSeconds / 3) n /= 2;

        var a = randn(n, n, dtype: dtype, device: device);
        var b = randn(n, n, dtype: dtype, device: device);
        // One full-size product warms up; the timed ones follow if the budget allows, else it is the sample.
        var seconds = Measure.Repeat(0, 1, () => Multiply(a, b));
        int timed = (int)Math.Min(reps, Math.Floor((budgetSeconds - seconds[0]) / seconds[0]));
        if (timed >= 1) seconds = Measure.Repeat(0, timed, () => Multiply(a, b));
        return (2.0 * n * n * n / Measure.Median(seconds) / 1e9, n, seconds);
    }
}
