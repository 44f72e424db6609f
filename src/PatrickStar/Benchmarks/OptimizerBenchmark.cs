using PatrickStar.Config;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Benchmarks;

/// <summary>One optimizer implementation's speed: elements updated per second (median of the timed steps).</summary>
public sealed record OptimizerTiming(string Name, double MedianSeconds, double ElementsPerSecond, List<double> Seconds);

/// <summary>
/// The Adam step over the same fp32 parameters three ways, side by side: TorchSharp's torch.optim.AdamW, the
/// tensor-op path (<see cref="AdamMath"/>), and the fused SIMD kernel; plus torch's copy_ bandwidth for
/// context (an fp32 Adam step reads 16 and writes 12 bytes per parameter).
/// </summary>
public static class OptimizerBenchmark
{
    public static (List<OptimizerTiming> Timings, double CopyBytesPerSecond) Run(long elements, int warmup = 1, int reps = 5)
    {
        var timings = new List<OptimizerTiming>();
        using var scope = NewDisposeScope();
        manual_seed(1);
        var weights = randn(elements);
        var grads = randn(elements);

        // torch.optim.AdamW
        {
            var p = new Parameter(weights.clone());
            p.grad = grads.clone();
            using var adamw = torch.optim.AdamW(new[] { p }, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1);
            var s = Measure.Repeat(warmup, reps, () => adamw.step());
            timings.Add(Timing("torch.optim.AdamW (TorchSharp)", elements, s));
        }
        // Tensor ops
        {
            var w = weights.clone();
            var m = zeros(elements);
            var v = zeros(elements);
            var settings = new AdamSettings(OptimizerType.AdamW, 0.9, 0.95, 1e-8, 0.1);
            long step = 0;
            var s = Measure.Repeat(warmup, reps, () => AdamMath.Update(w, grads, m, v, 1e-3, settings, ++step, decay: true));
            timings.Add(Timing("tensor ops (AdamMath)", elements, s));
        }
        // Fused kernel
        {
            var w = weights.clone();
            var m = zeros(elements);
            var v = zeros(elements);
            long step = 0;
            var s = Measure.Repeat(warmup, reps, () => KernelStep(w, m, v, grads, ++step));
            timings.Add(Timing($"fused SIMD kernel ({CpuAdamKernel.Best})", elements, s));
        }
        // Copy bandwidth: bytes copied per second (read + write counted once, as in the notes).
        var source = randn(elements);
        var target = empty(elements);
        var copy = Measure.Repeat(warmup, reps, () => target.copy_(source));
        double bandwidth = elements * 4.0 / Measure.Median(copy);
        return (timings, bandwidth);
    }

    private static unsafe void KernelStep(Tensor w, Tensor m, Tensor v, Tensor g, long step) =>
        CpuAdamKernel.Step((float*)TensorMemory.Address(w), (float*)TensorMemory.Address(m), (float*)TensorMemory.Address(v),
            TensorMemory.Address(g), ElementType.Float32, null, ElementType.Float32, w.numel(),
            new AdamHyperparameters(1e-3, 0.9, 0.95, 1e-8, 0.1, DecoupledWeightDecay: true, step));

    private static OptimizerTiming Timing(string name, long elements, List<double> seconds)
    {
        double median = Measure.Median(seconds);
        return new OptimizerTiming(name, median, elements / median, seconds);
    }
}
