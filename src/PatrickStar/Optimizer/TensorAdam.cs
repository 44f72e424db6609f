using PatrickStar.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Optimizer;

/// <summary>Adam's hyperparameters; the learning rate comes from the schedule at every step.</summary>
public sealed record AdamSettings(OptimizerType Type, double Beta1, double Beta2, double Eps, double WeightDecay)
{
    public static AdamSettings From(OptimizerSection s) => new(s.Type, s.Beta1, s.Beta2, s.Eps, s.WeightDecay);
}

/// <summary>
/// Adam / AdamW over fp32 tensors with in-place tensor ops, on whatever device the tensors live.
/// Same arithmetic as torch.optim's (bias-corrected, eps added after the square root), so results
/// match it; unlike TorchSharp's optimizer its state (step, momentum, variance) is plain tensors that
/// an engine or a checkpoint can read and write.
/// </summary>
public sealed class TensorAdam : IDisposable
{
    /// <summary>One parameter's slot: the fp32 weight, where its fp32 gradient is, and whether it decays.</summary>
    public sealed class Slot
    {
        internal Slot(string name, Tensor weight, bool decay)
        {
            Name = name;
            Weight = weight;
            Decay = decay;
            Momentum = zeros_like(weight, dtype: ScalarType.Float32);
            Variance = zeros_like(weight, dtype: ScalarType.Float32);
        }

        public string Name { get; }
        public Tensor Weight { get; }
        public bool Decay { get; }
        public Tensor Momentum { get; }
        public Tensor Variance { get; }
    }

    private readonly List<Slot> slots = new();
    private readonly AdamSettings settings;

    public TensorAdam(AdamSettings settings) { this.settings = settings; }

    public IReadOnlyList<Slot> Slots => slots;

    /// <summary>Optimizer steps taken so far (drives bias correction).</summary>
    public long StepCount { get; set; }

    public void Add(string name, Tensor weight, bool decay)
    {
        if (weight.dtype != ScalarType.Float32)
            throw new ArgumentException($"TensorAdam keeps fp32 weights; '{name}' is {weight.dtype}.");
        slots.Add(new Slot(name, weight, decay));
    }

    /// <summary>One update; <paramref name="gradients"/>[i] is the fp32 gradient of slot i.</summary>
    public void Step(IReadOnlyList<Tensor> gradients, double learningRate) => Step(gradients, learningRate, 1.0, null, fused: false);

    /// <summary>
    /// One update. <paramref name="gradientMultiplier"/> scales every gradient first (the tensor path scales them in place);
    /// <paramref name="copies"/>[i] (when given) receives slot i's new weight in its own dtype. <paramref name="fused"/>: slots
    /// whose operands allow it (<see cref="KernelAdam.Applies"/>) are updated by the fused SIMD kernel, the others by tensor ops.
    /// </summary>
    public void Step(IReadOnlyList<Tensor> gradients, double learningRate, double gradientMultiplier, IReadOnlyList<Tensor>? copies, bool fused)
    {
        if (gradients.Count != slots.Count || (copies is not null && copies.Count != slots.Count))
            throw new ArgumentException($"{gradients.Count} gradients and {copies?.Count} copies given for {slots.Count} parameters.");
        StepCount++;
        using var _ = no_grad();
        for (int i = 0; i < slots.Count; i++)
        {
            var s = slots[i];
            var g = gradients[i];
            var copy = copies?[i];
            if (fused && KernelAdam.Applies(s.Weight, s.Momentum, s.Variance, g, copy))
            {
                KernelAdam.Update(s.Weight, s.Momentum, s.Variance, g, copy, learningRate, settings, StepCount, s.Decay, gradientMultiplier);
                continue;
            }
            if (gradientMultiplier != 1.0) g.mul_(gradientMultiplier);
            AdamMath.Update(s.Weight, g, s.Momentum, s.Variance, learningRate, settings, StepCount, s.Decay);
            copy?.copy_(s.Weight);
        }
    }

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.Momentum.Dispose();
            s.Variance.Dispose();
        }
        slots.Clear();
    }
}

/// <summary>
/// The Adam / AdamW arithmetic on fp32 tensors in place: the one implementation every tensor path uses, with the
/// constants of <see cref="CpuAdamKernel"/>. The results agree with the kernel to float rounding, not to the bit:
/// libtorch's fp32 sqrt is not correctly rounded (about 1 element in 6 differs by an ulp from IEEE sqrt here).
/// </summary>
public static class AdamMath
{
    /// <param name="step">The step number after this update (1 for the first), for bias correction.</param>
    public static void Update(Tensor weight, Tensor gradient, Tensor momentum, Tensor variance, double learningRate,
        AdamSettings settings, long step, bool decay)
    {
        var k = AdamScalars.From(learningRate, settings.Beta1, settings.Beta2, settings.Eps, decay ? settings.WeightDecay : 0, step);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        Tensor g = gradient;
        if (k.WeightDecay != 0)
        {
            if (settings.Type == OptimizerType.AdamW) weight.mul_(k.DecayFactor);
            else g = g.add(weight, alpha: k.WeightDecay); // Adam: the L2 term joins the gradient
        }
        momentum.mul_(k.Beta1).add_(g, alpha: k.OneMinusBeta1);
        variance.mul_(k.Beta2).addcmul_(g, g, value: k.OneMinusBeta2);
        var denom = variance.sqrt().mul_(k.InverseBiasCorrection2Sqrt).add_(k.Eps);
        weight.addcdiv_(momentum, denom, value: k.NegativeStepSize);
    }
}

/// <summary>Adam's per-step constants, rounded to fp32 once, shared by the kernel and the tensor path.</summary>
public readonly record struct AdamScalars(float WeightDecay, float DecayFactor, float Beta1, float OneMinusBeta1, float Beta2,
    float OneMinusBeta2, float InverseBiasCorrection2Sqrt, float Eps, float NegativeStepSize)
{
    public static AdamScalars From(double lr, double beta1, double beta2, double eps, double weightDecay, long step) => new(
        (float)weightDecay,
        (float)(1 - lr * weightDecay),
        (float)beta1,
        (float)(1 - beta1),
        (float)beta2,
        (float)(1 - beta2),
        (float)(1 / Math.Sqrt(1 - Math.Pow(beta2, step))),
        (float)eps,
        (float)(-(lr / (1 - Math.Pow(beta1, step)))));
}

/// <summary>Global-norm gradient clipping, the same rule as torch.nn.utils.clip_grad_norm_.</summary>
public static class GradientClipping
{
    /// <summary>The L2 norm of all gradients together, accumulated in fp32 or wider.</summary>
    public static double GlobalNorm(IEnumerable<Tensor> gradients)
    {
        using var scope = NewDisposeScope();
        Tensor? sumSquares = null;
        double onHost = 0;
        int threads = KernelAdam.Threads;
        foreach (var g in gradients)
        {
            if (g.device_type == TorchSharp.DeviceType.CPU && g.is_contiguous() && g.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16)
            {
                // One read of the gradient, where the tensor route makes (for 16-bit gradients) an fp32 copy first.
                unsafe { onHost += SquaredNormKernel.SumOfSquares(Runtime.TensorMemory.Address(g), KernelAdam.ElementOf(g.dtype), g.numel(), threads: threads); }
                continue;
            }
            var n = linalg.vector_norm(g.dtype == ScalarType.Float32 || g.dtype == ScalarType.Float64 ? g : g.to(ScalarType.Float32));
            var sq = n.square();
            sumSquares = sumSquares is null ? sq : sumSquares.add_(sq);
        }
        return Math.Sqrt(onHost + (sumSquares is null ? 0.0 : sumSquares.to(ScalarType.Float64).item<double>()));
    }

    /// <summary>The factor gradients are multiplied by: maxNorm / (norm + 1e-6) when that is below 1, else 1 (0 disables).</summary>
    public static double Factor(double norm, double maxNorm)
    {
        if (maxNorm <= 0) return 1.0;
        double factor = maxNorm / (norm + 1e-6);
        return factor < 1 ? factor : 1.0;
    }

    /// <summary>Scales the gradients in place when their global norm exceeds <paramref name="maxNorm"/>.</summary>
    public static void Scale(IEnumerable<Tensor> gradients, double norm, double maxNorm)
    {
        double factor = Factor(norm, maxNorm);
        if (factor == 1.0) return;
        using var _ = no_grad();
        foreach (var g in gradients) g.mul_(factor);
    }
}
