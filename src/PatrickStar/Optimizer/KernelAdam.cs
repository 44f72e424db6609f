using PatrickStar.Config;
using static TorchSharp.torch;

namespace PatrickStar.Optimizer;

/// <summary>
/// <see cref="CpuAdamKernel"/> over tensors: one fused pass per parameter that reads the gradient once, updates the fp32
/// master, momentum and variance, and writes the compute-precision copy, instead of the eight tensor ops of
/// <see cref="AdamMath"/> plus a separate gradient scaling and parameter copy. For contiguous host tensors only.
/// </summary>
public static class KernelAdam
{
    /// <summary>The kernel's element type for a tensor dtype.</summary>
    public static ElementType ElementOf(ScalarType t) => t switch
    {
        ScalarType.Float32 => ElementType.Float32,
        ScalarType.BFloat16 => ElementType.BFloat16,
        ScalarType.Float16 => ElementType.Float16,
        _ => throw new ArgumentException($"no Adam kernel for {t} tensors"),
    };

    /// <summary>
    /// Threads of the host kernels (Adam, the gradient norm): torch's intra-op threads, so that a run limited to fewer
    /// threads than cores (`threads` in the config) keeps that limit in its optimizer too. Results do not depend on it.
    /// </summary>
    public static int Threads => Math.Max(1, TorchSharp.torch.get_num_threads());

    /// <summary>Whether the kernel can update these operands in place: all contiguous, in host memory, of kernel dtypes.</summary>
    public static bool Applies(Tensor master, Tensor momentum, Tensor variance, Tensor grad, Tensor? copy) =>
        OnHost(master) && OnHost(momentum) && OnHost(variance) && OnHost(grad) && (copy is null || OnHost(copy))
        && master.dtype == ScalarType.Float32 && momentum.dtype == ScalarType.Float32 && variance.dtype == ScalarType.Float32
        && KernelType(grad.dtype) && (copy is null || KernelType(copy.dtype));

    private static bool OnHost(Tensor t) => t.device_type == TorchSharp.DeviceType.CPU && t.is_contiguous();

    private static bool KernelType(ScalarType t) => t is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>
    /// One Adam / AdamW update of a parameter. <paramref name="gradientMultiplier"/> scales the gradient inside the pass
    /// (clipping, loss-scale removal); <paramref name="copy"/> (null: none) receives the new weight in its own dtype.
    /// </summary>
    public static unsafe void Update(Tensor master, Tensor momentum, Tensor variance, Tensor grad, Tensor? copy,
        double learningRate, AdamSettings settings, long step, bool decay, double gradientMultiplier = 1.0)
    {
        long n = master.numel();
        if (momentum.numel() != n || variance.numel() != n || grad.numel() != n || (copy is not null && copy.numel() != n))
            throw new ArgumentException($"the Adam operands differ in size: master {n}, momentum {momentum.numel()}, variance {variance.numel()}, " +
                                        $"grad {grad.numel()}, copy {copy?.numel()}.");
        var h = new AdamHyperparameters(learningRate, settings.Beta1, settings.Beta2, settings.Eps, decay ? settings.WeightDecay : 0,
            DecoupledWeightDecay: settings.Type == OptimizerType.AdamW, step, InverseLossScale: gradientMultiplier);
        var copyType = copy is null ? ElementType.Float32 : ElementOf(copy.dtype);
        CpuAdamKernel.Step((float*)Runtime.TensorMemory.Address(master), (float*)Runtime.TensorMemory.Address(momentum),
            (float*)Runtime.TensorMemory.Address(variance), Runtime.TensorMemory.Address(grad), ElementOf(grad.dtype),
            copy is null ? null : Runtime.TensorMemory.Address(copy), copyType, n, h, threads: Threads);
    }
}
