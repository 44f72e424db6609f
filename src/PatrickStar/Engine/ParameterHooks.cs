using PatrickStar.Chunks;
using PatrickStar.Hooks;
using PatrickStar.Memory;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Engine;

/// <summary>
/// The model's events, turned into chunk work: before a module's forward or backward its parameters' chunks are
/// fetched to the device and its tensors enter COMPUTE; after it they hold again; each gradient contribution is
/// counted and, once no backward left reads the weight, written over the parameter's slot; after a module's backward
/// the chunks whose gradients are complete go to their owners.
/// </summary>
internal sealed class ParameterHooks : IParameterHandler, IRowGradientHandler, IDisposable
{
    private readonly Module<Tensor, Tensor> model;
    private readonly ChunkLists chunks;
    private readonly IReadOnlyDictionary<Parameter, ManagedParameter> managed;
    private readonly ChunkMover mover;
    private readonly ChunkCollectives collectives;
    private readonly NonModelTracer tracer;
    private readonly Action<MomentKind, string> enterMoment;
    private readonly Device device;
    private readonly List<Action> unhooks = new();
    private readonly HashSet<string> valueFreeModules = new(StringComparer.Ordinal);
    private bool backwardReadsValues = true; // of the module whose backward is running now

    /// <param name="enterMoment">Begins a moment (trace, placement, profile) before a module's forward or backward.</param>
    public ParameterHooks(Module<Tensor, Tensor> model, ChunkLists chunks, IReadOnlyDictionary<Parameter, ManagedParameter> managed,
        ChunkMover mover, ChunkCollectives collectives, NonModelTracer tracer, Action<MomentKind, string> enterMoment, Device device)
    {
        this.model = model;
        this.chunks = chunks;
        this.managed = managed;
        this.mover = mover;
        this.collectives = collectives;
        this.tracer = tracer;
        this.enterMoment = enterMoment;
        this.device = device;
        foreach (var mp in managed.Values) ParameterEvents.Attach(mp.Parameter, this);
        Install();
    }

    // Training means the model is in train mode (the trainer's Evaluate switches to eval). Grad mode
    // cannot tell: autograd turns it off while it runs backward, where the events are training ones.
    public bool Training => model.training;

    private void Install()
    {
        foreach (var (path, module) in model.named_modules())
        {
            var own = ParameterPacking.ParametersOf(module).Where(managed.ContainsKey).Select(p => managed[p]).ToList();
            if (own.Count == 0) continue;
            if (module is not Module<Tensor, Tensor> m)
                throw new NotSupportedException($"module '{path}' ({module.GetType().Name}) owns parameters but is not a Module<Tensor, Tensor>; the chunk engine hooks only those.");
            string label = module is INamedLayer named ? named.Path : path;
            // Forward hooks run on the caller's stack (unlike backward callbacks), so their exceptions propagate normally.
            if (module is IValueFreeBackward) valueFreeModules.Add(label);
            var pre = m.register_forward_pre_hook((_, x) => { BeforeForward(label, own); return x; });
            var post = m.register_forward_hook((_, _, y) => { AfterForward(own); return y; });
            unhooks.Add(() => pre.remove());
            unhooks.Add(() => post.remove());
        }
    }

    private void BeforeForward(string module, List<ManagedParameter> parameters)
    {
        enterMoment(MomentKind.PreForward, module);
        bool readsValues = !valueFreeModules.Contains(module);
        foreach (var mp in parameters)
        {
            BringToCompute(mp, module);
            if (Training && !ActivationCheckpoint.IsRecomputing) mp.Gradient.CountForwardUse(readsValues);
        }
        mover.Prefetcher?.ReadAhead(Training);
    }

    /// <summary>Fetches the parameter's chunk (from its owner, then to the device) and marks the tensor COMPUTE.</summary>
    private void BringToCompute(ManagedParameter mp, string module)
    {
        var chunk = chunks.Param[mp.Place.Chunk];
        collectives.EnsureFetched(chunk);
        mover.Fetch(chunk, module, Training);
        EnsureResident(chunk, mp);
        mover.Touch(chunk);
        mp.MoveTo(TensorState.Compute, tracer.Label);
    }

    /// <summary>Operators read parameters only from device-resident chunks: checked before every use.</summary>
    private void EnsureResident(Chunk chunk, ManagedParameter mp)
    {
        if (!mover.OnDevice(chunk) || mp.Parameter.device_type != device.type)
            throw new InvalidOperationException($"{mp.Name} (chunk {chunk.Index}) is not on the device at {tracer.Label}; an operator would read it from the host.");
    }

    private void AfterForward(List<ManagedParameter> parameters)
    {
        foreach (var mp in parameters)
            mp.MoveTo(Training ? TensorState.HoldAfterForward : TensorState.Hold, tracer.Label);
    }

    void IParameterHandler.BeforeBackward(string module, IReadOnlyList<Parameter> parameters)
    {
        enterMoment(MomentKind.PreBackward, module);
        backwardReadsValues = !valueFreeModules.Contains(module);
        // Gradients take the parameter slots (unless they accumulate in their own chunks): the disk copy becomes stale.
        bool slotsChange = Training && !(chunks.Accumulating && !collectives.Active);
        foreach (var p in parameters)
        {
            BringToCompute(managed[p], module);
            if (slotsChange) chunks.Param[managed[p].Place.Chunk].MarkModified();
        }
        mover.Prefetcher?.ReadAhead(Training);
    }

    bool IParameterHandler.AcceptGradient(Parameter p, Tensor gradient)
    {
        var mp = managed[p];
        using var _ = no_grad();
        bool wait = mp.Gradient.Arrive(backwardReadsValues);
        if (chunks.Accumulating && !collectives.Active)
        {
            // Accumulating: every contribution adds into the fp32 gradient chunk as it arrives.
            // (Data parallelism sends the slot's gradient to the owner instead, who accumulates it.)
            using var slot = chunks.Gradient[mp.Place.Chunk].Slot(mp.Place);
            using var flat = gradient.reshape(-1);
            using var onHost = flat.to(ScalarType.Float32).to(slot.device);
            slot.add_(onHost);
            return true;
        }
        // A shared weight whose value a later backward still reads keeps its contributions apart until then; otherwise
        // PatrickStar's reuse: the gradient takes its slot in the compute-precision chunk (the fp32 master still holds
        // the weight), and later contributions (the tied embedding's lookup) add into it.
        if (wait) mp.Gradient.HoldAside(gradient);
        else mp.Gradient.IntoSlot(mp.Parameter, gradient);
        return true;
    }

    bool IParameterHandler.ReadyForForward(Parameter p) => !managed.TryGetValue(p, out var mp) || mp.State == TensorState.Compute;

    bool IRowGradientHandler.AcceptRows(Parameter p, Tensor indices, Tensor rows)
    {
        var mp = managed[p];
        bool accumulate = chunks.Accumulating && !collectives.Active;
        // Rows in another dtype than the slot (bf16 storage, fp32 compute) take the dense path: summed in fp32, then narrowed.
        if (!accumulate && rows.dtype != p.dtype) return false;
        using var _ = no_grad();
        bool wait = mp.Gradient.Arrive(backwardReadsValues);
        if (accumulate)
        {
            using var slot = chunks.Gradient[mp.Place.Chunk].Slot(mp.Place);
            using var table = slot.view(p.shape);
            using var onSlot = rows.to(ScalarType.Float32).to(slot.device);
            using var at = indices.to(slot.device);
            table.index_add_(0, at, onSlot, 1);
        }
        else if (wait)
        {
            using var dense = zeros(p.shape, dtype: rows.dtype, device: rows.device);
            dense.index_add_(0, indices, rows, 1);
            mp.Gradient.HoldAside(dense);
        }
        else mp.Gradient.RowsIntoSlot(mp.Parameter, indices, rows);
        return true;
    }

    void IParameterHandler.AfterBackward(string module, IReadOnlyList<Parameter> parameters)
    {
        var own = parameters.Select(p => managed[p]).ToList();
        foreach (var mp in own) mp.MoveTo(TensorState.HoldAfterBackward, tracer.Label);
        collectives.ReduceCompletedGradients(own);
    }

    public void Dispose()
    {
        foreach (var unhook in unhooks) unhook();
        foreach (var mp in managed.Values) ParameterEvents.Detach(mp.Parameter);
    }
}
