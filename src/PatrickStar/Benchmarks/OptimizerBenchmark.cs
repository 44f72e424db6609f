using PatrickStar.Config;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Benchmarks;

/// <summary>
/// One optimizer implementation's speed: elements updated per second (median of the timed steps).
/// <paramref name="GradType"/>: the gradients it reads (bf16 ones come with a bf16 parameter copy written).
/// </summary>
public sealed record OptimizerTiming(string Name, double MedianSeconds, double ElementsPerSecond, List<double> Seconds,
                                     ElementType GradType = ElementType.Float32);

/// <summary>
/// The Adam implementations side by side; the bound of each variant (<see cref="AdamTrafficProbe"/> with its element
/// types: fp32 gradients, or bf16 gradients in and bf16 parameters out); and STREAM bandwidth for reference.
/// </summary>
public sealed record OptimizerReport(List<OptimizerTiming> Timings, BandwidthResult Bandwidth, AdamBound Fp32Bound, AdamBound Bf16Bound)
{
    /// <summary>The bound that applies to <paramref name="timing"/>: the probe with the same element types.</summary>
    public AdamBound BoundFor(OptimizerTiming timing) => timing.GradType == ElementType.BFloat16 ? Bf16Bound : Fp32Bound;
}

/// <summary>
/// The Adam step over the same parameters, side by side: TorchSharp's torch.optim.AdamW, the tensor-op path
/// (<see cref="AdamMath"/>), the fused SIMD kernel with fp32 gradients, and the kernel as mixed precision uses it
/// (bf16 gradients in, bf16 parameters out); plus each variant's bound (a probe with Adam's traffic) and STREAM bandwidth.
/// </summary>
public static class OptimizerBenchmark
{
    public static OptimizerReport Run(long elements, int warmup = 1, int reps = 5)
    {
        var timings = new List<OptimizerTiming>();
        manual_seed(1);
        using var weights = randn(elements);
        using var grads = randn(elements);

        using (NewDisposeScope())
        {
            var p = new Parameter(weights.clone());
            p.grad = grads.clone();
            using var adamw = torch.optim.AdamW(new[] { p }, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1);
            var s = Measure.Repeat(warmup, reps, () => adamw.step());
            timings.Add(Timing("torch.optim.AdamW (TorchSharp)", elements, s));
        }
        using (NewDisposeScope())
        {
            var w = weights.clone();
            var m = zeros(elements);
            var v = zeros(elements);
            var settings = new AdamSettings(OptimizerType.AdamW, 0.9, 0.95, 1e-8, 0.1);
            long step = 0;
            var s = Measure.Repeat(warmup, reps, () => AdamMath.Update(w, grads, m, v, 1e-3, settings, ++step, decay: true));
            timings.Add(Timing("tensor ops (AdamMath)", elements, s));
        }
        using (NewDisposeScope())
        {
            var w = weights.clone();
            var m = zeros(elements);
            var v = zeros(elements);
            long step = 0;
            var s = Measure.Repeat(warmup, reps, () => KernelStep(w, m, v, grads, null, ++step));
            timings.Add(Timing($"fused kernel, fp32 grads ({CpuAdamKernel.Best})", elements, s));
        }
        // Each bound right after the kernel it bounds (a shared machine's load drifts), and a best of more runs
        // than the kernel's median: the best run is what the memory can deliver.
        int boundReps = Math.Max(10, 3 * reps);
        var fp32Bound = AdamTrafficProbe.Measure(elements, ElementType.Float32, null, warmup, boundReps);
        using (NewDisposeScope())
        {
            var w = weights.clone();
            var m = zeros(elements);
            var v = zeros(elements);
            var g16 = grads.to(ScalarType.BFloat16);
            var p16 = empty(elements, ScalarType.BFloat16);
            long step = 0;
            var s = Measure.Repeat(warmup, reps, () => KernelStep(w, m, v, g16, p16, ++step));
            timings.Add(Timing($"fused kernel, bf16 grads -> bf16 params ({CpuAdamKernel.Best})", elements, s, ElementType.BFloat16));
        }
        var bf16Bound = AdamTrafficProbe.Measure(elements, ElementType.BFloat16, ElementType.BFloat16, warmup, boundReps);
        return new OptimizerReport(timings, MemoryBandwidth.Measure(elements, warmup, reps), fp32Bound, bf16Bound);
    }

    private static unsafe void KernelStep(Tensor w, Tensor m, Tensor v, Tensor g, Tensor? param, long step)
    {
        var low = g.dtype == ScalarType.BFloat16 ? ElementType.BFloat16 : ElementType.Float32;
        CpuAdamKernel.Step((float*)TensorMemory.Address(w), (float*)TensorMemory.Address(m), (float*)TensorMemory.Address(v),
            TensorMemory.Address(g), low, param is null ? null : TensorMemory.Address(param), low, w.numel(),
            new AdamHyperparameters(1e-3, 0.9, 0.95, 1e-8, 0.1, DecoupledWeightDecay: true, step));
    }

    private static OptimizerTiming Timing(string name, long elements, List<double> seconds, ElementType gradType = ElementType.Float32)
    {
        double median = Measure.Median(seconds);
        return new OptimizerTiming(name, median, elements / median, seconds, gradType);
    }
}
