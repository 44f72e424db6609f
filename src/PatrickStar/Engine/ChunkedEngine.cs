using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Hooks;
using PatrickStar.Memory;
using PatrickStar.Optimizer;
using PatrickStar.Profiling;
using PatrickStar.Timing;
using PatrickStar.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Engine;

/// <summary>The chunk engine's settings (config keys chunk_size, placement_policy, device_memory, host_memory, mem_tracer.*).</summary>
public sealed record ChunkEngineOptions(
    long DeviceMemory,
    long HostMemory,
    long? ChunkSize = null,
    ChunkPlacement Policy = ChunkPlacement.Dynamic,
    double WarmupDeviceFraction = 0.2,
    bool HybridAdam = true,
    double MarginUseRatio = 0.8,
    bool TensorAdamOnDevice = false)
{
    /// <summary>Budgets from the config; on a CPU device the defaults split the machine's available memory 1:3.</summary>
    public static ChunkEngineOptions From(TrainingConfig config, Device device)
    {
        var c = config.Chunks;
        long available = MemoryMeter.AvailableHostMemory() ?? 0;
        long deviceBudget = c.DeviceMemory ?? (device.type == DeviceType.CPU && available > 0
            ? available / 4
            : throw new ArgumentException("device_memory must be set for a non-CPU device (TorchSharp cannot query its memory): e.g. --device-memory 20GiB."));
        long hostBudget = c.HostMemory ?? Math.Max(0, available - (device.type == DeviceType.CPU ? deviceBudget : 0));
        return new ChunkEngineOptions(deviceBudget, hostBudget, c.ChunkSize, c.Placement, c.WarmupDeviceRatio, c.HybridAdam, c.MarginUseRatio, c.TensorAdamOnDevice);
    }

    /// <summary>Host bytes of model data per parameter: storage-precision copy (bf16 for both bf16 modes), fp32 master, momentum, variance (+ fp32 gradients when accumulating).</summary>
    public static int HostBytesPerParameter(TrainingConfig config) =>
        Runtime.TensorMemory.ElementSize(PlainEngine.ComputeType(config.Precision)) + 12 + (config.GradientAccumulationSteps > 1 ? 4 : 0);
}

/// <summary>
/// PatrickStar's engine: parameters, master weights and Adam state in fixed-size chunks; parameter
/// chunks move between the device and host tiers as training needs them. The first iteration is a
/// warm-up that records, at every moment (pre-forward and pre-backward of each module with parameters,
/// and the optimizer step), the non-model memory and which chunks were used; afterwards chunks are
/// placed so that the device holds as many as the non-model data leaves room for, evicting by OPT
/// (the chunk needed farthest in the future leaves first).
/// </summary>
public sealed partial class ChunkedEngine : ITrainingEngine, IParameterHandler
{
    private readonly Module<Tensor, Tensor> model;
    private readonly ChunkEngineOptions options;
    private readonly TrainingConfig config;
    private readonly ScalarType computeType;
    private readonly TierMemory device;
    private readonly TierMemory host;
    private readonly ChunkLayout layout;
    private readonly List<ChunkRuntime> paramChunks = new();
    private readonly List<ChunkRuntime> masterChunks = new();
    private readonly List<ChunkRuntime> momentumChunks = new();
    private readonly List<ChunkRuntime> varianceChunks = new();
    private readonly List<ChunkRuntime> gradientChunks = new(); // only with gradient accumulation
    private readonly Dictionary<Parameter, ManagedParameter> managed = new(ReferenceEqualityComparer.Instance);
    private readonly List<ManagedParameter> ordered = new();
    private readonly Dictionary<string, ManagedParameter> managedByName = new(StringComparer.Ordinal);
    private readonly List<Action> unhooks = new();
    private readonly AdamSettings adam;
    private readonly LossScaler scaler;
    private EngineStatistics statistics = EngineStatistics.None;
    private readonly IterationStatistics iteration = new();

    private MomentTrace trace = new();
    private DeviceBudgetPlan? plan;
    private PeakSampler? sampler;
    private bool warmup = true;
    private int moment = -1;
    private string momentLabel = "start";
    private long adamStep;
    private bool iterationStarted;
    private int iterationIndex;
    private ProfileRecorder? profiler;
    private ProfileStage? phase;

    /// <param name="communicator">The data-parallel job this rank belongs to; null or one rank trains alone.</param>
    public ChunkedEngine(Module<Tensor, Tensor> model, TrainingConfig config, Device computeDevice, ChunkEngineOptions options, Tensor? sampleInput = null,
        ICommunicator? communicator = null)
    {
        comm = communicator is { Size: > 1 } ? communicator : null;
        dpMode = config.Distributed.Mode;
        if (comm is not null && computeDevice.type != DeviceType.CPU)
            throw new NotSupportedException($"data parallelism moves chunks through CPU buffers (MPI), but the device is {computeDevice}; use --device cpu.");
        this.model = model;
        this.config = config;
        this.options = options;
        Device = computeDevice;
        computeType = PlainEngine.ComputeType(config.Precision);
        adam = AdamSettings.From(config.Optimizer);
        scaler = LossScaler.From(config);
        device = new TierMemory(Tier.Device, computeDevice, options.DeviceMemory);
        host = new TierMemory(Tier.Host, CPU, options.HostMemory);
        model.train();
        // Parameters take the compute precision first; their fp32 masters are made from those values,
        // as the plain engine does, so both engines start from identical weights.
        if (computeType != ScalarType.Float32) model.to(computeType);

        var order = ExecutionOrder(model, sampleInput);
        var specs = order.Select(p => new TensorSpec(p.Name, p.Parameter.numel())).ToList();
        layout = options.ChunkSize is long size
            ? ChunkLayout.Pack(specs, size)
            : ChunkSizeSearch.ForDevice(specs, options.DeviceMemory, Runtime.TensorMemory.ElementSize(computeType));
        // Every rank builds the same layout; padding to a multiple of the ranks makes every group complete.
        chunkCount = (layout.ChunkCount + Ranks - 1) / Ranks * Ranks;
        fetched = new bool[chunkCount];
        gradientsReduced = new bool[chunkCount];
        BuildChunks(order);
        InstallHooks();
        if (options.Policy == ChunkPlacement.Static)
            foreach (var c in paramChunks.Where(c => c.Payload is not null)) Move(c, device, "static placement of parameter chunks");
        GC.Collect();
        GC.WaitForPendingFinalizers(); // tensors dropped before now must not be counted as activations later
        baselineBytes = Math.Max(0, MemoryMeter.NativeInUse() - device.UsedBytes - host.UsedBytes);
        statistics = new EngineStatistics(Chunks: new ChunkStatistics(chunkCount, layout.ChunkSize, layout.Utilisation));
    }

    /// <summary>
    /// The library entry point: builds the model with <paramref name="modelFactory"/> (seeded from the config)
    /// on the CPU and hands its parameters to a chunk engine on the configured device.
    /// </summary>
    public static ChunkedEngine Initialize(Func<Module<Tensor, Tensor>> modelFactory, TrainingConfig config, Tensor? sampleInput = null)
    {
        ConfigLoader.Validate(config);
        Runtime.TorchRuntime.EnsureLoaded();
        var device = Runtime.TorchRuntime.ResolveDevice(config.Device);
        manual_seed(config.Seed);
        return new ChunkedEngine(modelFactory(), config, device, ChunkEngineOptions.From(config, device), sampleInput);
    }

    /// <summary>Runs the model on <paramref name="input"/> (on <see cref="Device"/>); the hooks place the chunks.</summary>
    public Tensor Forward(Tensor input) => model.call(input);

    /// <summary>
    /// Drops gradients gathered since the last step without updating: parameter slots that hold gradients get
    /// their weights back from the masters, and accumulation chunks are cleared.
    /// </summary>
    public void ZeroGrad()
    {
        using var _ = no_grad();
        for (int i = 0; i < chunkCount; i++)
        {
            if (!HasState(i)) continue;
            long used = Used(i);
            using var master = masterChunks[i].Payload!.narrow(0, 0, used);
            using var param = paramChunks[i].Payload!.narrow(0, 0, used);
            param.copy_(master);
        }
        ClearGradientState();
        ReleaseRemoteChunks();
    }

    private void ClearGradientState()
    {
        foreach (var g in gradientChunks) g.Payload?.zero_();
        foreach (var mp in ordered) mp.GradientInSlot = false;
    }

    public string Name => options.Policy == ChunkPlacement.Static ? "chunked (static)" : "chunked";
    public Module<Tensor, Tensor> Model => model;
    public Device Device { get; }
    public ChunkLayout Layout => layout;
    public EngineStatistics Statistics => statistics;
    public TierMemory DeviceTier => device;
    public TierMemory HostTier => host;
    public bool WarmingUp => warmup;
    public MomentTrace Trace => trace;
    public LossScaler Scaler => scaler;

    /// <summary>
    /// Records every moment (memory by tier and chunk kind), chunk event and phase into <paramref name="recorder"/>
    /// from now on; the model description labels the run.
    /// </summary>
    public void AttachProfiler(ProfileRecorder recorder, string modelDescription)
    {
        profiler = recorder;
        var perChunk = new KindBytes();
        foreach (var list in AllChunkLists())
            if (list.Count > 0) perChunk[list[0].Kind] = list[0].Bytes;
        recorder.SetRun(modelDescription, Name, options.DeviceMemory, options.HostMemory, layout.ChunkSize, layout.ChunkCount, perChunk);
        // The chunks that exist already were allocated on the host at construction (or placed on the device since).
        foreach (var list in AllChunkLists())
            foreach (var c in list)
            {
                recorder.ChunkEvent(ChunkEventType.Allocate, c.Kind, c.Index, null, Tier.Host, c.Bytes);
                if (c.Tier == device) recorder.ChunkEvent(ChunkEventType.Move, c.Kind, c.Index, Tier.Host, Tier.Device, c.Bytes);
            }
    }

    private IEnumerable<List<ChunkRuntime>> AllChunkLists() => [paramChunks, masterChunks, momentumChunks, varianceChunks, gradientChunks];

    /// <summary>Chunk bytes resident in a tier, by kind (what the profile records at each moment).</summary>
    public KindBytes ChunkBytesIn(Tier tier)
    {
        var bytes = new KindBytes();
        foreach (var list in AllChunkLists())
            foreach (var c in list)
                if (c.Payload is not null && c.Tier!.Tier == tier) bytes[c.Kind] += c.Bytes;
        return bytes;
    }

    private void EnterPhase(ProfileStage stage)
    {
        if (profiler is null || phase == stage) return;
        if (phase is ProfileStage previous) profiler.EndPhase(previous);
        profiler.BeginPhase(stage);
        phase = stage;
    }

    private void RecordMoment(MomentKind kind, string module, long nonModel)
    {
        if (profiler is null) return;
        var stage = kind switch { MomentKind.PreForward => ProfileStage.Forward, MomentKind.PreBackward => ProfileStage.Backward, _ => ProfileStage.Optimizer };
        EnterPhase(stage);
        long? allowance = options.Policy == ChunkPlacement.Static ? null
            : plan is null ? (long)(options.DeviceMemory * options.WarmupDeviceFraction) : plan.ChunkBytesAllowedAt(Math.Max(0, moment));
        profiler.Moment(kind, module, stage, ChunkBytesIn(Tier.Device), nonModel, ChunkBytesIn(Tier.Host), baselineBytes, allowance);
    }

    /// <summary>Adam's step count (bias correction); saved and restored by checkpoints.</summary>
    public long OptimizerStepCount { get => adamStep; set => adamStep = value; }

    /// <summary>Chunk indices whose master, momentum and variance live on the device (hybrid Adam).</summary>
    public IReadOnlyList<int> OptimizerChunksOnDevice => masterChunks.Where(c => c.Tier == device).Select(c => c.Index).ToList();

    /// <summary>Largest non-model bytes measured at any moment of any iteration so far.</summary>
    public long PeakNonModelObserved { get; private set; }

    /// <summary>Largest device bytes seen at any moment: resident chunks + measured non-model data.</summary>
    public long PeakDeviceBytes { get; private set; }

    // ---- Setup -----------------------------------------------------------------------------------------

    private sealed record OrderedParameter(string Name, Parameter Parameter);

    /// <summary>Parameters in the order of their first use, found by one forward pass with recording hooks.</summary>
    private static List<OrderedParameter> ExecutionOrder(Module<Tensor, Tensor> model, Tensor? sampleInput)
    {
        var names = new Dictionary<Parameter, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in model.named_parameters()) names[p] = name;
        var order = new List<OrderedParameter>();
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        if (sampleInput is not null)
        {
            var handles = new List<Action>();
            foreach (var (_, module) in model.named_modules())
            {
                if (module is not Module<Tensor, Tensor> m) continue;
                var own = ParametersOf(module).ToList();
                if (own.Count == 0) continue;
                var handle = m.register_forward_pre_hook((_, x) =>
                {
                    foreach (var p in own)
                        if (seen.Add(p)) order.Add(new OrderedParameter(names[p], p));
                    return x;
                });
                handles.Add(() => handle.remove());
            }
            // In eval mode, so that dropout draws nothing from the random stream the training run will use.
            bool wasTraining = model.training;
            model.eval();
            using (no_grad())
            using (var scope = NewDisposeScope())
                model.call(sampleInput);
            if (wasTraining) model.train();
            foreach (var unhook in handles) unhook();
        }
        // Parameters the sample pass did not reach keep their registration order, after the others.
        foreach (var (name, p) in model.named_parameters())
            if (seen.Add(p)) order.Add(new OrderedParameter(name, p));
        return order;
    }

    /// <summary>A module's own parameters (not its children's), plus any it uses from elsewhere (tied weights).</summary>
    private static IEnumerable<Parameter> ParametersOf(Module module)
    {
        foreach (var (_, p) in module.named_parameters(recurse: false)) yield return p;
        if (module is ISharedParameterUser shared)
            foreach (var p in shared.SharedParameters) yield return p;
    }

    private void BuildChunks(List<OrderedParameter> order)
    {
        bool accumulate = config.GradientAccumulationSteps > 1;
        using var _ = no_grad();
        foreach (var (name, p) in order)
        {
            var place = layout[name];
            var mp = new ManagedParameter(name, p, p.shape.ToArray(), place,
                decay: !config.Optimizer.NoDecayOnBiasAndNorm || p.dim() >= 2);
            managed[p] = mp;
            managedByName[name] = mp;
            ordered.Add(mp);
        }
        var byChunk = ordered.ToLookup(mp => mp.Place.Chunk);
        // Chunk by chunk: its parameters move into it and their own storage is freed at once (Rebind), so building
        // never holds the model twice: the peak is the chunks plus the parameters not yet moved, not 20 B/param.
        for (int i = 0; i < chunkCount; i++)
        {
            // Only the owner of a chunk keeps its payload and optimizer state; other ranks fetch the payload when they use it.
            bool state = HasState(i);
            var param = state ? NewChunk(i, ChunkKind.Param, computeType) : ReleasedChunk(i, ChunkKind.Param, computeType);
            var master = state ? NewChunk(i, ChunkKind.Master, ScalarType.Float32) : ReleasedChunk(i, ChunkKind.Master, ScalarType.Float32);
            paramChunks.Add(param);
            masterChunks.Add(master);
            momentumChunks.Add(state ? NewChunk(i, ChunkKind.Momentum, ScalarType.Float32) : ReleasedChunk(i, ChunkKind.Momentum, ScalarType.Float32));
            varianceChunks.Add(state ? NewChunk(i, ChunkKind.Variance, ScalarType.Float32) : ReleasedChunk(i, ChunkKind.Variance, ScalarType.Float32));
            if (accumulate)
                gradientChunks.Add(state ? NewChunk(i, ChunkKind.Gradient, ScalarType.Float32) : ReleasedChunk(i, ChunkKind.Gradient, ScalarType.Float32));
            param.Tensors.AddRange(byChunk[i]);
            if (!state)
            {
                BindReleased(param);
                continue;
            }
            foreach (var mp in param.Tensors)
            {
                using var source = mp.Parameter.detach().reshape(-1);
                using var slot = master.Slot(mp.Place);
                slot.copy_(source);
            }
            using (var used = master.Payload!.narrow(0, 0, Used(i)))
            using (var target = param.Payload!.narrow(0, 0, Used(i)))
                target.copy_(used); // the compute-precision copy of the masters
            Rebind(param);
        }
        foreach (var p in ordered) ParameterEvents.Attach(p.Parameter, this);
    }

    private ChunkRuntime NewChunk(int index, ChunkKind kind, ScalarType dtype)
    {
        var c = new ChunkRuntime(index, kind, dtype, layout.ChunkSize);
        c.Payload = host.Acquire(dtype, layout.ChunkSize, $"{kind} chunk {index}");
        c.Tier = host;
        c.Payload.zero_();
        return c;
    }

    private void InstallHooks()
    {
        foreach (var (path, module) in model.named_modules())
        {
            var own = ParametersOf(module).Where(managed.ContainsKey).Select(p => managed[p]).ToList();
            if (own.Count == 0) continue;
            if (module is not Module<Tensor, Tensor> m)
                throw new NotSupportedException($"module '{path}' ({module.GetType().Name}) owns parameters but is not a Module<Tensor, Tensor>; the chunk engine hooks only those.");
            string label = module is INamedLayer named ? named.Path : path;
            // Forward hooks run on the caller's stack (unlike backward callbacks), so their exceptions propagate normally.
            if (module is IValueFreeBackward) valueFreeModules.Add(label);
            var pre = m.register_forward_pre_hook((_, x) => { BeforeForward(label, own); return x; });
            var post = m.register_forward_hook((_, _, y) => { AfterForward(label, own); return y; });
            unhooks.Add(() => pre.remove());
            unhooks.Add(() => post.remove());
        }
    }

    // ---- Moments and placement -----------------------------------------------------------------------

    // Training means the model is in train mode (the trainer's Evaluate switches to eval). Grad mode
    // cannot tell: autograd turns it off while it runs backward, where the events are training ones.
    private bool Training => model.training;

    private void EnterMoment(MomentKind kind, string module)
    {
        momentLabel = $"{kind} of {module}";
        if (!Training && kind != MomentKind.OptimizerStep) return; // evaluation passes are not traced
        if (!iterationStarted)
        {
            iterationStarted = true;
            iteration.Reset();
            profiler?.BeginIteration(iterationIndex);
            if (warmup)
            {
                sampler = new PeakSampler();
                sampler.Start();
            }
        }
        long nonModel = NonModelBytes(warmup ? sampler!.TakePeak() : MemoryMeter.NativeInUse());
        if (warmup)
        {
            if (moment >= 0) trace.RecordNonModel(nonModel);
            moment = trace.BeginMoment(kind, module);
        }
        else
        {
            moment++;
            trace.CheckSameShape(moment, kind, module);
        }
        iteration.PeakNonModel = Math.Max(iteration.PeakNonModel, nonModel);
        PeakNonModelObserved = Math.Max(PeakNonModelObserved, nonModel);
        lastNonModel = nonModel;
        // Evict ahead of a moment whose traced non-model peak would not fit (dynamic placement), and in any
        // case keep chunks + the non-model data measured now within the budget.
        long allowed = options.DeviceMemory - nonModel;
        if (!warmup && options.Policy == ChunkPlacement.Dynamic) allowed = Math.Min(allowed, plan!.ChunkBytesAllowedAt(moment));
        MakeRoom(allowed, needed: null);
        ObserveNeed(nonModel, paramChunks.Where(c => c.Tier == device && c.HasComputingTensor).Sum(c => c.Bytes));
        if (device.UsedBytes + nonModel > options.DeviceMemory)
            throw new TierBudgetExceededException(
                $"at moment {moment} ({momentLabel}) {Bytes.Format(nonModel)} of non-model data ({nonModel:N0} bytes, {NonModelSource}) and " +
                $"{Bytes.Format(device.UsedBytes)} of chunks that cannot leave exceed the {Bytes.Format(options.DeviceMemory)} device budget " +
                $"({options.DeviceMemory:N0} bytes). Raise device_memory, or lower the batch or sequence length.");
        ObserveDevice(nonModel);
        RecordMoment(kind, module, nonModel);
    }

    private long lastNonModel;

    /// <summary>How the non-model figure of the current moment was read (error messages name it).</summary>
    private string NonModelSource => warmup ? "the peak sampled since the previous moment" : "measured at this moment";

    /// <summary>
    /// The smallest device budget the checks so far would have accepted: per moment, the non-model bytes the check
    /// compares (the sampled peak during warm-up) plus the parameter-chunk bytes that must be on the device together.
    /// What the estimator's device need is tested against.
    /// </summary>
    public long DeviceNeedObserved { get; private set; }

    private void ObserveNeed(long nonModel, long chunkBytes) => DeviceNeedObserved = Math.Max(DeviceNeedObserved, nonModel + chunkBytes);

    /// <summary>
    /// Non-model memory = what the allocator has handed out minus every chunk buffer (both tiers, pools included),
    /// minus what the process held before training (the dataset, libtorch itself): on a GPU that memory would not
    /// be on the device at all.
    /// </summary>
    private long NonModelBytes(long allocatorInUse)
    {
        if (Device.type != DeviceType.CPU) return 0; // libtorch's CUDA allocator statistics are not reachable from TorchSharp
        return Math.Max(0, allocatorInUse - device.UsedBytes - host.UsedBytes - baselineBytes);
    }

    private long baselineBytes;

    private void ObserveDevice(long nonModel)
    {
        long model = device.UsedBytes;
        PeakDeviceBytes = Math.Max(PeakDeviceBytes, model + nonModel);
        if (model + nonModel > iteration.PeakDevice)
        {
            iteration.PeakDevice = model + nonModel;
            iteration.PeakDeviceModel = model;
            iteration.PeakDeviceNonModel = nonModel;
        }
    }

    /// <summary>Bytes of parameter chunks allowed on the device now.</summary>
    private long AllowedChunkBytes()
    {
        if (options.Policy == ChunkPlacement.Static) return options.DeviceMemory;
        if (plan is null) return (long)(options.DeviceMemory * options.WarmupDeviceFraction);
        if (!Training) return plan.MinimumChunkBytesAllowed; // evaluation: no moments, so the tightest traced allowance
        return plan.ChunkBytesAllowedAt(Math.Max(0, moment));
    }

    /// <summary>Brings a parameter chunk to the device, evicting others by OPT when room is short.</summary>
    private void Access(ChunkRuntime chunk, string module)
    {
        if (warmup && Training) trace.RecordAccess(chunk.Index);
        // A resident chunk passes unchecked only because it fitted beside this moment's non-model bytes: count it too.
        ObserveNeed(lastNonModel, paramChunks.Where(c => c == chunk || (c.Tier == device && c.HasComputingTensor)).Sum(c => c.Bytes));
        if (chunk.Tier == device) return;
        long workingSet = WorkingSetBytes(chunk);
        long room = options.DeviceMemory - lastNonModel;
        long allowed = Math.Min(room, Math.Max(AllowedChunkBytes(), workingSet));
        if (workingSet > allowed) throw WorkingSetError(module, chunk, allowed);
        MakeRoom(allowed, chunk);
        if (device.InUseBytes + chunk.Bytes > allowed) throw WorkingSetError(module, chunk, allowed);
        Move(chunk, device, $"{module} ({momentLabel})");
        ObserveDevice(lastNonModel);
    }

    /// <summary>The chunks that must be on the device together with <paramref name="chunk"/> (those computing now).</summary>
    private long WorkingSetBytes(ChunkRuntime chunk) =>
        chunk.Bytes + paramChunks.Where(c => c.Tier == device && c.HasComputingTensor).Sum(c => c.Bytes);

    private Exception WorkingSetError(string module, ChunkRuntime chunk, long allowed)
    {
        long computing = paramChunks.Where(c => c.Tier == device && c.HasComputingTensor).Sum(c => c.Bytes);
        // The figure the check compared: the non-model bytes of this moment (during warm-up the sampled peak since the last moment).
        return new TierBudgetExceededException(
            $"the device budget cannot hold the working set of module '{module}' at moment {moment} ({momentLabel}): it needs " +
            $"{computing + chunk.Bytes:N0} bytes of parameter chunks ({Bytes.Format(computing + chunk.Bytes)}) while {Bytes.Format(lastNonModel)} of non-model data " +
            $"({lastNonModel:N0} bytes, {NonModelSource}) " +
            $"leaves {Bytes.Format(Math.Min(allowed, options.DeviceMemory))} ({Math.Min(allowed, options.DeviceMemory):N0} bytes) of the " +
            $"{Bytes.Format(options.DeviceMemory)} device budget. Raise device_memory to at least {Bytes.Format(lastNonModel + computing + chunk.Bytes)}, " +
            "lower the batch or sequence length, or use a smaller chunk_size.");
    }

    /// <summary>Evicts chunks (OPT order after warm-up) until the device holds at most <paramref name="allowed"/> bytes of chunks plus <paramref name="needed"/>.</summary>
    private void MakeRoom(long allowed, ChunkRuntime? needed)
    {
        long extra = needed?.Bytes ?? 0;
        while (device.InUseBytes + extra > allowed)
        {
            var candidates = paramChunks.Where(c => c.Tier == device && c != needed && !c.HasComputingTensor).ToList();
            if (candidates.Count == 0)
            {
                // Non-model data above what the warm-up traced: hybrid Adam's optimizer state gives its room back.
                var group = masterChunks.LastOrDefault(c => c.Tier == device);
                if (group is null) break;
                foreach (var c in new[] { masterChunks[group.Index], momentumChunks[group.Index], varianceChunks[group.Index] })
                    Move(c, host, $"optimizer state of chunk {group.Index} leaves for {momentLabel}", ChunkEventType.Evict);
                iteration.Evictions++;
                continue;
            }
            ChunkRuntime victim;
            if (!warmup && Training && plan is not null)
            {
                int? id = OptEvictionPolicy.ChooseVictim(trace, moment, candidates.Select(c => c.Index));
                victim = paramChunks[id!.Value];
            }
            else
            {
                victim = candidates.OrderBy(c => c.LastUse).First(); // warm-up has no trace yet: least recently used
            }
            Move(victim, host, $"eviction before {momentLabel}", ChunkEventType.Evict);
            iteration.Evictions++;
        }
        // Pooled device buffers occupy the device too: keep only what the allowance leaves room for.
        if (device.UsedBytes + extra > allowed) device.Trim(Math.Max(0, allowed - extra - device.InUseBytes));
    }

    /// <summary>A real copy into a buffer owned by the target tier; parameters of the chunk are re-pointed at it.</summary>
    private void Move(ChunkRuntime chunk, TierMemory target, string purpose, ChunkEventType kind = ChunkEventType.Move)
    {
        if (chunk.Tier == target) return;
        using var timed = StepPhases.Begin(StepPhase.ChunkMovement);
        if (chunk.HasComputingTensor)
            throw new InvalidOperationException($"chunk {chunk.Index} cannot move during {momentLabel}: a tensor in it is computing.");
        var buffer = target.Acquire(chunk.DType, chunk.Elements, purpose);
        using (no_grad()) buffer.copy_(chunk.Payload!);
        var old = chunk.Payload!;
        var oldTier = chunk.Tier!;
        chunk.Payload = buffer;
        chunk.Tier = target;
        if (chunk.Kind == ChunkKind.Param) Rebind(chunk);
        oldTier.Return(old);
        if (target == device) iteration.BytesToDevice += chunk.Bytes; else iteration.BytesToHost += chunk.Bytes;
        iteration.Moves++;
        profiler?.ChunkEvent(kind, chunk.Kind, chunk.Index, oldTier.Tier, target.Tier, chunk.Bytes);
    }

    /// <summary>Points every parameter of a parameter chunk at its slot in the current payload (same Parameter objects).</summary>
    private static void Rebind(ChunkRuntime chunk)
    {
        using var _ = no_grad();
        foreach (var mp in chunk.Tensors)
        {
            using var slot = chunk.Payload!.narrow(0, mp.Place.Offset, mp.Place.Numel);
            using var view = slot.view(mp.Shape);
            mp.Parameter.set_(view);
        }
    }

    private void SetState(ManagedParameter mp, TensorState to)
    {
        TensorTransitions.Check(mp.State, to, mp.Name, mp.Place.Chunk, momentLabel);
        mp.State = to;
    }

    // ---- Forward hooks ------------------------------------------------------------------------------

    private readonly HashSet<string> valueFreeModules = new(StringComparer.Ordinal);
    private bool backwardReadsValues = true; // of the module whose backward is running now

    private void BeforeForward(string module, List<ManagedParameter> parameters)
    {
        EnterMoment(MomentKind.PreForward, module);
        bool readsValues = !valueFreeModules.Contains(module);
        foreach (var mp in parameters)
        {
            var chunk = paramChunks[mp.Place.Chunk];
            EnsureFetched(chunk);
            Access(chunk, module);
            EnsureResident(chunk, mp);
            chunk.LastUse = ++useClock;
            SetState(mp, TensorState.Compute);
            if (Training && !ActivationCheckpoint.IsRecomputing)
            {
                mp.ForwardUses++;
                if (readsValues) mp.ValueUses++;
            }
        }
    }

    private long useClock;

    /// <summary>Operators read parameters only from device-resident chunks: checked before every use.</summary>
    private void EnsureResident(ChunkRuntime chunk, ManagedParameter mp)
    {
        if (chunk.Tier != device || mp.Parameter.device_type != Device.type)
            throw new InvalidOperationException($"{mp.Name} (chunk {chunk.Index}) is not on the device at {momentLabel}; an operator would read it from the host.");
    }

    private void AfterForward(string module, List<ManagedParameter> parameters)
    {
        foreach (var mp in parameters)
            SetState(mp, Training ? TensorState.HoldAfterForward : TensorState.Hold);
    }

    // ---- Backward (IParameterHandler) -----------------------------------------------------------------

    public void Backward(Tensor loss)
    {
        foreach (var mp in ordered)
        {
            mp.ForwardUsesAtStart = mp.ForwardUses;
            mp.BackwardUsesLeft = mp.ForwardUses;
            mp.ValueUsesLeft = mp.ValueUses;
            mp.ValueUses = 0;
            mp.ForwardUses = 0;
        }
        if (scaler.Scale == 1) loss.backward();
        else
        {
            using var scaled = loss * scaler.Scale;
            scaled.backward();
        }
        BackwardHandles.ReleaseReturned();
        ParameterEvents.RethrowCaptured();
        if (comm is not null) ReduceRemainingGradients();
        foreach (var mp in ordered)
        {
            if (mp.BackwardUsesLeft != 0 && mp.BackwardUsesLeft != mp.ForwardUsesAtStart)
                throw new InvalidOperationException($"parameter {mp.Name} received {mp.ForwardUsesAtStart - mp.BackwardUsesLeft} of its gradient contributions.");
            mp.Pending?.Dispose();
            mp.Pending = null;
        }
    }

    void IParameterHandler.BeforeBackward(string module, IReadOnlyList<Parameter> parameters)
    {
        EnterMoment(MomentKind.PreBackward, module);
        backwardReadsValues = !valueFreeModules.Contains(module);
        foreach (var p in parameters)
        {
            var mp = managed[p];
            var chunk = paramChunks[mp.Place.Chunk];
            EnsureFetched(chunk);
            Access(chunk, module);
            EnsureResident(chunk, mp);
            chunk.LastUse = ++useClock;
            SetState(mp, TensorState.Compute);
        }
    }

    bool IParameterHandler.AcceptGradient(Parameter p, Tensor gradient)
    {
        var mp = managed[p];
        using var _ = no_grad();
        if (backwardReadsValues) mp.ValueUsesLeft--;
        bool last = mp.BackwardUsesLeft <= 1;
        mp.BackwardUsesLeft--;
        if (gradientChunks.Count > 0 && comm is null)
        {
            // Accumulating: every contribution adds into the fp32 gradient chunk as it arrives.
            // (Data parallelism sends the slot's gradient to the owner instead, who accumulates it: ReduceGradients.)
            using var slot = gradientChunks[mp.Place.Chunk].Slot(mp.Place);
            using var flat = gradient.reshape(-1);
            using var onHost = flat.to(ScalarType.Float32).to(slot.device);
            slot.add_(onHost);
            return true;
        }
        if (!last && mp.ValueUsesLeft > 0)
        {
            // A shared weight whose value a later backward still reads: keep contributions apart until then.
            if (mp.Pending is null) mp.Pending = gradient.to(ScalarType.Float32, copy: true).DetachFromDisposeScope();
            else mp.Pending.add_(gradient);
            return true;
        }
        // PatrickStar's reuse: no backward left reads the value, so the gradient takes its slot in the
        // compute-precision chunk (the fp32 master still holds the weight); later contributions (the tied
        // embedding's lookup) add into it, with no fp32 copy of the weight's size held across backward.
        var total = gradient;
        if (mp.Pending is not null) total = mp.Pending.add_(gradient);
        if (mp.GradientInSlot) mp.Parameter.add_(total);
        else mp.Parameter.copy_(total);
        mp.GradientInSlot = true;
        if (mp.Pending is not null)
        {
            mp.Pending.Dispose();
            mp.Pending = null;
        }
        return true;
    }

    void IParameterHandler.AfterBackward(string module, IReadOnlyList<Parameter> parameters)
    {
        foreach (var p in parameters)
            SetState(managed[p], TensorState.HoldAfterBackward);
        if (comm is not null) ReduceCompletedGradients(parameters);
    }

    // ---- Optimizer step ----------------------------------------------------------------------------

    public StepOutcome Step(double learningRate)
    {
        EnterMoment(MomentKind.OptimizerStep, "optimizer");
        using var _ = no_grad();
        // Parameters that received no gradient (unused this step) still hold weights in their slot: zero them.
        foreach (var mp in ordered.Where(m => gradientChunks.Count == 0 && !m.GradientInSlot && HasState(m.Place.Chunk)))
            mp.Parameter.zero_();

        var decision = scaler.Decide(GlobalGradientNorm(), config.GradientClipping);
        if (!decision.Skip)
        {
            adamStep++;
            for (int i = 0; i < chunkCount; i++)
                if (HasState(i)) UpdateChunk(i, learningRate, decision.GradientMultiplier);
            ClearGradientState();
            ReleaseRemoteChunks(); // copies fetched before this update are stale: every rank fetches again at the next use
        }
        else
        {
            ZeroGrad(); // the slots hold (overflowed) gradients: the weights come back from the fp32 masters
        }
        foreach (var mp in ordered) SetState(mp, TensorState.Hold);
        EndIteration();
        statistics = statistics with { GradNorm = decision.GradNorm, LossScale = scaler.Scale };
        return new StepOutcome(decision.GradNorm, decision.Skip);
    }

    private double GlobalGradientNorm()
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        for (int i = 0; i < chunkCount; i++)
        {
            if (!HasState(i)) continue;
            var g = GradientOf(i);
            if (g.dtype != ScalarType.Float32) g = g.to(ScalarType.Float32);
            sum += linalg.vector_norm(g).square().to(ScalarType.Float64).item<double>();
        }
        // Each rank holds the gradients of the chunks it owns: the sum of squares over ranks is the global one, and a
        // non-finite value on any rank (fp16 overflow) makes the sum non-finite everywhere, so every rank skips alike.
        if (comm is not null) sum = comm.AllReduce(sum, ReduceOp.Sum);
        return Math.Sqrt(sum);
    }

    /// <summary>The fp32 gradients of chunk i's used prefix, on the host (where the optimizer state lives).</summary>
    private Tensor GradientOf(int i)
    {
        long used = Used(i);
        var source = gradientChunks.Count > 0 ? gradientChunks[i].Payload! : paramChunks[i].Payload!;
        var prefix = source.narrow(0, 0, used);
        return prefix.device_type == DeviceType.CPU ? prefix : prefix.to(ScalarType.Float32).to(CPU);
    }

    /// <summary>
    /// Adam over chunk i, then the new compute-precision parameters into the parameter chunk. Optimizer
    /// state in CPU memory: the fused SIMD kernel updates each parameter's range in one pass and writes the
    /// compute-precision parameter itself (also for the device tier when the device is the CPU, so that where a
    /// chunk's state lives never changes a bit of the result). Optimizer state on a GPU (hybrid Adam): tensor ops there.
    /// </summary>
    private void UpdateChunk(int i, double lr, double gradientMultiplier)
    {
        using var scope = NewDisposeScope();
        var grad = GradientOf(i);
        var master = masterChunks[i].Payload!;
        var m = momentumChunks[i].Payload!;
        var v = varianceChunks[i].Payload!;
        var paramPayload = paramChunks[i].Payload!;
        bool kernel = master.device_type == DeviceType.CPU && grad.device_type == DeviceType.CPU && grad.is_contiguous()
                      && paramPayload.device_type == DeviceType.CPU
                      && !(options.TensorAdamOnDevice && masterChunks[i].Tier == device);
        if (kernel)
        {
            KernelUpdate(i, grad, master, m, v, paramPayload, lr, gradientMultiplier);
            return;
        }
        grad = grad.to(master.device).to(ScalarType.Float32);
        if (gradientMultiplier != 1.0) grad = grad.mul(gradientMultiplier);
        foreach (var mp in paramChunks[i].Tensors)
        {
            long off = mp.Place.Offset, n = mp.Place.Numel;
            AdamMath.Update(master.narrow(0, off, n), grad.narrow(0, off, n), m.narrow(0, off, n), v.narrow(0, off, n),
                lr, adam, adamStep, mp.Decay);
        }
        long used = Used(i);
        paramPayload.narrow(0, 0, used).copy_(master.narrow(0, 0, used));
    }

    private unsafe void KernelUpdate(int i, Tensor grad, Tensor master, Tensor m, Tensor v, Tensor param, double lr, double gradientMultiplier)
    {
        var gradType = KernelAdam.ElementOf(grad.dtype);
        var paramType = KernelAdam.ElementOf(computeType);
        int gradSize = Runtime.TensorMemory.ElementSize(grad.dtype);
        int paramSize = Runtime.TensorMemory.ElementSize(computeType);
        float* pm = (float*)Runtime.TensorMemory.Address(master);
        float* pmom = (float*)Runtime.TensorMemory.Address(m);
        float* pvar = (float*)Runtime.TensorMemory.Address(v);
        byte* pg = (byte*)Runtime.TensorMemory.Address(grad);
        byte* pp = (byte*)Runtime.TensorMemory.Address(param);
        foreach (var mp in paramChunks[i].Tensors)
        {
            long off = mp.Place.Offset;
            var h = new AdamHyperparameters(lr, adam.Beta1, adam.Beta2, adam.Eps, mp.Decay ? adam.WeightDecay : 0,
                DecoupledWeightDecay: adam.Type == OptimizerType.AdamW, adamStep, InverseLossScale: gradientMultiplier);
            CpuAdamKernel.Step(pm + off, pmom + off, pvar + off, pg + off * gradSize, gradType,
                pp + off * paramSize, paramType, mp.Place.Numel, h);
        }
    }

    private void EndIteration()
    {
        if (warmup)
        {
            trace.RecordNonModel(NonModelBytes(sampler!.TakePeak()));
            sampler.Dispose();
            sampler = null;
            trace.Complete();
            plan = new DeviceBudgetPlan(options.DeviceMemory, trace, CommunicationBufferBytes);
            warmup = false;
            PlaceOptimizerChunks();
        }
        else
        {
            trace.CheckIterationLength(moment + 1);
        }
        moment = -1;
        iterationStarted = false;
        iterationIndex++;
        if (phase is ProfileStage last) profiler?.EndPhase(last);
        phase = null;
        var communication = comm is null ? null // held bytes after the update: remote copies are released
            : new CommunicationStatistics(iteration.CommunicatedBytes, iteration.Collectives, iteration.CommunicationSeconds, ModelDataBytesHeld);
        statistics = statistics with
        {
            Chunks = statistics.Chunks! with
            {
                LastIteration = new ChunkIterationStatistics(iteration.BytesToDevice, iteration.BytesToHost, iteration.Moves, iteration.Evictions,
                    iteration.PeakDevice, iteration.PeakDeviceModel, iteration.PeakDeviceNonModel, DeviceNeedObserved,
                    paramChunks.Count(c => c.Tier == device), masterChunks.Count(c => c.Tier == device), communication),
            },
        };
    }

    /// <summary>
    /// Hybrid Adam: the margin is the device room that parameter chunks never need, i.e. the tightest traced
    /// allowance for chunks minus every parameter chunk. Optimizer-state groups (master, momentum, variance of
    /// one chunk index) that fit in that margin, times the safety ratio, move to the device once and are
    /// updated there from then on; they never have to leave, because parameter chunks fit beside them at
    /// every moment. The rest stay on the host for the SIMD kernel.
    /// </summary>
    private void PlaceOptimizerChunks()
    {
        if (!options.HybridAdam || plan is null) return;
        long allowance = options.Policy == ChunkPlacement.Static
            ? options.DeviceMemory - trace.PeakNonModel
            : plan.MinimumChunkBytesAllowed;
        long margin = (long)((allowance - paramChunks.Sum(c => c.Bytes)) * options.MarginUseRatio);
        for (int i = 0; i < chunkCount; i++)
        {
            if (!HasState(i)) continue;
            long group = masterChunks[i].Bytes + momentumChunks[i].Bytes + varianceChunks[i].Bytes;
            if (group > margin) break;
            margin -= group;
            foreach (var c in new[] { masterChunks[i], momentumChunks[i], varianceChunks[i] })
                Move(c, device, $"hybrid Adam: optimizer state of chunk {i}");
        }
        device.Trim(0);
    }

    // ---- Optimizer state (checkpoints) ----------------------------------------------------------------

    /// <summary>Names of the managed parameters, in chunk order.</summary>
    public IReadOnlyList<string> ParameterNames => ordered.Where(p => HasState(p.Place.Chunk)).Select(p => p.Name).ToList();

    /// <summary>A host fp32 copy of the used part of one chunk of master weights, momentum or variance.</summary>
    public Tensor ReadChunk(ChunkKind kind, int index)
    {
        using var _ = no_grad();
        using var used = StateChunk(kind, index).Payload!.narrow(0, 0, Used(index));
        return used.to(ScalarType.Float32, CPU, copy: true);
    }

    /// <summary>Overwrites the used part of one chunk of master weights, momentum or variance; masters also refresh the parameters.</summary>
    public void WriteChunk(ChunkKind kind, int index, Tensor values)
    {
        long used = Used(index);
        if (values.numel() != used)
            throw new ArgumentException($"{kind} chunk {index} holds {used:N0} elements, but {values.numel():N0} were given.");
        using var _ = no_grad();
        var chunk = StateChunk(kind, index);
        using var target = chunk.Payload!.narrow(0, 0, used);
        using var flat = values.reshape(-1);
        target.copy_(flat);
        if (kind == ChunkKind.Master)
        {
            using var param = paramChunks[index].Payload!.narrow(0, 0, used);
            param.copy_(target);
            foreach (var mp in paramChunks[index].Tensors) mp.GradientInSlot = false;
        }
    }

    private static ChunkKind ChunkOf(StateKind kind) => kind switch
    {
        StateKind.Master => ChunkKind.Master,
        StateKind.Momentum => ChunkKind.Momentum,
        _ => ChunkKind.Variance,
    };

    /// <summary>A host fp32 copy of one parameter's master weight, momentum or variance, in the parameter's shape.</summary>
    public Tensor ReadState(string name, StateKind kind)
    {
        var mp = ManagedByName(name);
        using var _ = no_grad();
        using var slot = StateChunk(ChunkOf(kind), mp.Place.Chunk).Slot(mp.Place);
        using var shaped = slot.view(mp.Shape);
        return shaped.to(ScalarType.Float32, CPU, copy: true);
    }

    /// <summary>Overwrites one parameter's master weight (and its compute-precision copy), momentum or variance.</summary>
    public void WriteState(string name, StateKind kind, Tensor value)
    {
        var mp = ManagedByName(name);
        if (!value.shape.SequenceEqual(mp.Shape))
            throw new ArgumentException($"{name}: {kind} has shape [{string.Join(", ", mp.Shape)}], but [{string.Join(", ", value.shape)}] was given.");
        using var _ = no_grad();
        using var slot = StateChunk(ChunkOf(kind), mp.Place.Chunk).Slot(mp.Place);
        using var flat = value.reshape(-1);
        slot.copy_(flat);
        if (kind == StateKind.Master)
        {
            using var param = paramChunks[mp.Place.Chunk].Slot(mp.Place);
            param.copy_(slot);
            mp.GradientInSlot = false;
        }
    }

    private ManagedParameter ManagedByName(string name)
    {
        if (!managedByName.TryGetValue(name, out var mp))
            throw new ArgumentException($"the engine manages no parameter named '{name}'.");
        if (!HasState(mp.Place.Chunk))
            throw new ArgumentException($"{name} lives in chunk {mp.Place.Chunk}, which rank {OwnerOf(mp.Place.Chunk)} owns; rank {Rank} holds no state for it.");
        return mp;
    }

    private ChunkRuntime StateChunk(ChunkKind kind, int index) => kind switch
    {
        ChunkKind.Master => masterChunks[index],
        ChunkKind.Momentum => momentumChunks[index],
        ChunkKind.Variance => varianceChunks[index],
        _ => throw new ArgumentException($"{kind} chunks hold no optimizer state; use Master, Momentum or Variance."),
    };

    public void Dispose()
    {
        sampler?.Dispose();
        foreach (var unhook in unhooks) unhook();
        foreach (var mp in ordered)
        {
            ParameterEvents.Detach(mp.Parameter);
            mp.Pending?.Dispose();
        }
        // Give parameters their own storage back so the model stays usable after the engine is gone.
        using (no_grad())
        {
            foreach (var mp in ordered)
            {
                using var own = mp.Parameter.detach().clone();
                mp.Parameter.set_(own);
            }
        }
        foreach (var c in paramChunks.Concat(masterChunks).Concat(momentumChunks).Concat(varianceChunks).Concat(gradientChunks))
        {
            if (c.Payload is null) continue;
            profiler?.ChunkEvent(ChunkEventType.Release, c.Kind, c.Index, c.Tier!.Tier, null, c.Bytes);
            c.Tier!.Return(c.Payload);
            c.Payload = null;
        }
        device.Dispose();
        host.Dispose();
        releasedPlaceholder?.Dispose();
    }

    // ---- Runtime records ---------------------------------------------------------------------------

    private sealed class IterationStatistics
    {
        public long BytesToDevice, BytesToHost, Moves, Evictions, PeakDevice, PeakDeviceModel, PeakDeviceNonModel, PeakNonModel, CommunicatedBytes, Collectives;
        public double CommunicationSeconds;
        public void Reset()
        {
            BytesToDevice = BytesToHost = Moves = Evictions = PeakDevice = PeakDeviceModel = PeakDeviceNonModel = PeakNonModel = CommunicatedBytes = Collectives = 0;
            CommunicationSeconds = 0;
        }
    }
}

/// <summary>What a chunk of a list holds.</summary>
public enum ChunkKind { Param, Master, Momentum, Variance, Gradient }

/// <summary>One chunk's payload and where it is. Exactly one tier owns the payload buffer at a time.</summary>
internal sealed class ChunkRuntime
{
    public ChunkRuntime(int index, ChunkKind kind, ScalarType dtype, long elements)
    {
        Index = index;
        Kind = kind;
        DType = dtype;
        Elements = elements;
    }

    public int Index { get; }
    public ChunkKind Kind { get; }
    public ScalarType DType { get; }
    public long Elements { get; }
    public Tensor? Payload { get; set; }
    public TierMemory? Tier { get; set; }
    public long LastUse { get; set; }
    public List<ManagedParameter> Tensors { get; } = new();
    public long Bytes => TierMemory.Bytes(DType, Elements);
    public bool HasComputingTensor => Tensors.Any(t => t.State == TensorState.Compute);

    /// <summary>A 1-D view of one tensor's slot (dispose it).</summary>
    public Tensor Slot(TensorPlacement place) => Payload!.narrow(0, place.Offset, place.Numel);
}

/// <summary>A model parameter under the engine's management.</summary>
internal sealed class ManagedParameter
{
    public ManagedParameter(string name, Parameter parameter, long[] shape, TensorPlacement place, bool decay)
    {
        Name = name;
        Parameter = parameter;
        Shape = shape;
        Place = place;
        Decay = decay;
    }

    public string Name { get; }
    public Parameter Parameter { get; }
    public long[] Shape { get; }
    public TensorPlacement Place { get; }
    public bool Decay { get; }
    public TensorState State { get; set; } = TensorState.Hold;
    public int ForwardUses { get; set; }
    public int ForwardUsesAtStart { get; set; }
    /// <summary>Forward uses by modules whose backward reads the parameter's value (not an embedding lookup).</summary>
    public int ValueUses { get; set; }
    public int ValueUsesLeft { get; set; }
    public int BackwardUsesLeft { get; set; }
    public Tensor? Pending { get; set; }
    public bool GradientInSlot { get; set; }
}
