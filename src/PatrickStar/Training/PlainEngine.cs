using PatrickStar.Config;
using PatrickStar.Optimizer;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>
/// The baseline: every parameter, gradient and optimizer state on the compute device.
/// fp32: the model's parameters are the weights the optimizer updates.
/// bf16 / fp16: the model runs in low precision; fp32 master weights and fp32 gradient accumulators live
/// beside it, the optimizer updates the masters and the low-precision parameters are refreshed from them.
/// bf16 with fp32 compute stores the parameters (and their .grad) in bf16 like bf16, but the model's ops upcast them.
/// fp16 scales the loss (<see cref="LossScaler"/>); an overflowing step is skipped.
/// </summary>
public sealed class PlainEngine : ITrainingEngine
{
    private readonly Module<Tensor, Tensor> model;
    private readonly List<Parameter> parameters;
    private readonly List<Tensor> masters;       // fp32 weights the optimizer owns (== parameters in fp32)
    private readonly List<Tensor?>? masterGrads; // bf16/fp16 only: fp32 gradient accumulators, made when first needed
    private readonly TensorAdam adam;
    private readonly double clip;
    private readonly LossScaler scaler;
    private readonly Precision precision;
    private readonly PlainRowGradients rowGradients;
    private EngineStatistics statistics = EngineStatistics.None;
    private bool gradientsInSlots;     // bf16/fp16: the last micro-batch's gradients are in the parameters' .grad
    private bool mastersHoldGradients; // bf16/fp16: the fp32 accumulators hold earlier micro-batches' gradients

    /// <summary>Model data per parameter: fp32 = weight + grad + m + v; bf16 (either compute)/fp16: 2 + 2 + fp32 master, its grad, m, v.</summary>
    public static int BytesPerParameter(Precision p) => p == Precision.Fp32 ? 16 : 20;

    public PlainEngine(Module<Tensor, Tensor> model, TrainingConfig config, Device device)
    {
        this.model = model;
        Device = device;
        precision = config.Precision;
        FusedCpuAdam = device.type == DeviceType.CPU;
        clip = config.GradientClipping;
        scaler = LossScaler.From(config);
        model.to(device);
        if (precision != Precision.Fp32) model.to(ComputeType(precision));
        model.train();
        rowGradients = new PlainRowGradients(model); // after the dtype change, which may replace the Parameter objects

        // Tied weights appear once: parameters() already yields each Parameter once.
        var named = model.named_parameters().ToList();
        parameters = named.Select(n => n.parameter).ToList();
        adam = new TensorAdam(AdamSettings.From(config.Optimizer));
        masters = new List<Tensor>();
        if (precision != Precision.Fp32) masterGrads = new List<Tensor?>();
        using (no_grad())
        {
            foreach (var (name, p) in named)
            {
                Tensor master = precision == Precision.Fp32 ? p : p.detach().to(ScalarType.Float32).clone();
                masters.Add(master);
                // The fused kernel reads one micro-batch's 16-bit gradients where backward left them: the fp32 accumulator
                // (4 B/param) exists only once a second micro-batch or the tensor-op update needs it.
                masterGrads?.Add(null);
                bool decay = !config.Optimizer.NoDecayOnBiasAndNorm || p.dim() >= 2;
                adam.Add(name, master, decay);
            }
        }
    }

    public string Name => "plain";
    public Module<Tensor, Tensor> Model => model;
    public Device Device { get; }
    public TensorAdam Optimizer => adam;

    /// <summary>
    /// Whether Adam runs as the fused SIMD kernel (<see cref="CpuAdamKernel"/>, as the chunk engine's host-side update does) on
    /// parameters in host memory, rather than as tensor ops. On by default for a CPU device; tensors on a GPU always use tensor ops.
    /// </summary>
    public bool FusedCpuAdam { get; set; }
    public EngineStatistics Statistics => statistics;
    public LossScaler Scaler => scaler;

    /// <summary>The dtype parameters are stored in (and, except for <see cref="Precision.Bf16Fp32"/>, compute in) for a precision.</summary>
    public static ScalarType ComputeType(Precision p) => p switch
    {
        Precision.Bf16 or Precision.Bf16Fp32 => ScalarType.BFloat16,
        Precision.Fp16 => ScalarType.Float16,
        _ => ScalarType.Float32,
    };

    /// <summary>
    /// The dtype activations flow in: the parameters' dtype, except for <see cref="Precision.Bf16Fp32"/> whose bf16
    /// parameters are upcast by each op so that activations and matmuls stay fp32.
    /// </summary>
    public static ScalarType ActivationType(Precision p) => p == Precision.Bf16Fp32 ? ScalarType.Float32 : ComputeType(p);

    public void Backward(Tensor loss)
    {
        if (masterGrads is not null) FlushToMasters(); // a previous micro-batch's gradients, while .grad is still its alone
        if (scaler.Scale == 1) loss.backward();
        else
        {
            using var scaled = loss * scaler.Scale;
            scaled.backward();
        }
        PatrickStar.Hooks.BackwardHandles.ReleaseReturned();
        if (masterGrads is null) return;
        gradientsInSlots = true;
        // The fused kernel reads 16-bit gradients itself: a step of one micro-batch never needs the fp32 copy (a read and
        // write of 6 B/param, plus clearing both), which is made only when a second micro-batch comes.
        if (!FusedCpuAdam || Device.type != DeviceType.CPU) FlushToMasters();
    }

    /// <summary>
    /// Moves the 16-bit gradients in the parameters' .grad into the fp32 accumulators, before autograd adds the next
    /// micro-batch into .grad: summing micro-batches in bf16 would lose the small ones.
    /// </summary>
    private void FlushToMasters()
    {
        if (!gradientsInSlots) return;
        using var _ = no_grad();
        for (int i = 0; i < parameters.Count; i++)
        {
            using var g = parameters[i].grad;
            if (g is null) continue;
            MasterGradient(i).add_(g);
            g.zero_();
        }
        gradientsInSlots = false;
        mastersHoldGradients = true;
    }

    /// <summary>Parameter i's fp32 gradient accumulator, made (zeroed, owned by the engine, not by a caller's scope) on first use.</summary>
    private Tensor MasterGradient(int i) => masterGrads![i] ??= zeros_like(masters[i]).DetachFromDisposeScope();

    public StepOutcome Step(double learningRate)
    {
        var grads = new List<Tensor>(parameters.Count);
        var owned = new List<Tensor>();
        // Mixed precision: one micro-batch's gradients are read where backward left them (see Backward); several were summed in fp32.
        if (masterGrads is not null && mastersHoldGradients) FlushToMasters();
        bool fromSlots = masterGrads is null || gradientsInSlots;
        gradientsInSlots = mastersHoldGradients = false;
        for (int i = 0; i < parameters.Count; i++)
        {
            if (!fromSlots) { grads.Add(MasterGradient(i)); continue; }
            var g = parameters[i].grad;
            if (g is null) { g = zeros_like(parameters[i]); owned.Add(g); }
            else owned.Add(g); // the getter returns a new handle each time: dispose it
            grads.Add(g);
        }
        try
        {
            var decision = scaler.Decide(GradientClipping.GlobalNorm(grads), clip);
            statistics = statistics with { LossScale = scaler.Scale };
            if (decision.Skip)
            {
                ClearGradients(grads, fromSlots);
                return new StepOutcome(decision.GradNorm, Skipped: true);
            }
            // Mixed precision: the update writes the new compute-precision parameters itself.
            adam.Step(grads, learningRate, decision.GradientMultiplier, precision == Precision.Fp32 ? null : parameters, FusedCpuAdam);
            double norm = decision.GradNorm;
            ClearGradients(grads, fromSlots);
            statistics = statistics with { GradNorm = norm };
            return new StepOutcome(norm, Skipped: false);
        }
        finally
        {
            foreach (var g in owned) g.Dispose();
        }
    }

    /// <summary>
    /// The fp32 accumulators are zeroed for the next step. Gradients in .grad are dropped instead (set to none, as
    /// torch's zero_grad does by default): autograd then stores the next step's gradient as it comes, where a zeroed
    /// .grad costs a pass to clear it and another to add the new gradient into it.
    /// </summary>
    private void ClearGradients(List<Tensor> grads, bool fromSlots)
    {
        using var _ = no_grad();
        if (!fromSlots)
        {
            foreach (var g in grads) g.zero_();
            return;
        }
        foreach (var p in parameters) p.grad = null;
    }

    public IReadOnlyList<string> ParameterNames => adam.Slots.Select(s => s.Name).ToList();

    public long OptimizerStepCount { get => adam.StepCount; set => adam.StepCount = value; }

    public Tensor ReadState(string name, StateKind kind)
    {
        using var noGrad = no_grad();
        return StateTensor(name, kind, out _).to(ScalarType.Float32, CPU, copy: true);
    }

    public void WriteState(string name, StateKind kind, Tensor value)
    {
        var target = StateTensor(name, kind, out int index);
        if (!value.shape.SequenceEqual(target.shape))
            throw new ArgumentException($"{name}: {kind} has shape [{string.Join(", ", target.shape)}], but [{string.Join(", ", value.shape)}] was given.");
        using var _ = no_grad();
        target.copy_(value);
        if (kind == StateKind.Master && precision != Precision.Fp32) parameters[index].copy_(target);
    }

    private Tensor StateTensor(string name, StateKind kind, out int index)
    {
        var slots = adam.Slots;
        for (index = 0; index < slots.Count; index++)
        {
            if (slots[index].Name != name) continue;
            return kind switch
            {
                StateKind.Master => slots[index].Weight,
                StateKind.Momentum => slots[index].Momentum,
                _ => slots[index].Variance,
            };
        }
        throw new ArgumentException($"the engine holds no parameter named '{name}'.");
    }

    public void Dispose()
    {
        rowGradients.Dispose();
        adam.Dispose();
        if (masterGrads is not null)
        {
            foreach (var t in masterGrads) t?.Dispose();
            foreach (var t in masters) t.Dispose();
        }
    }
}
