using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Hooks;
using PatrickStar.Memory;
using PatrickStar.Optimizer;
using PatrickStar.Profiling;
using PatrickStar.Training;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Engine;

/// <summary>
/// PatrickStar's engine: parameters, master weights and Adam state in fixed-size chunks (<see cref="ChunkLists"/>);
/// parameter chunks move between the device and host tiers as training needs them (<see cref="ChunkMover"/>). The
/// first iteration is a warm-up that records, at every moment (pre-forward and pre-backward of each module with
/// parameters, and the optimizer step), the non-model memory and which chunks were used (<see cref="NonModelTracer"/>);
/// afterwards chunks are placed so that the device holds as many as the non-model data leaves room for
/// (<see cref="PlacementPolicy"/>). The model's events arrive through <see cref="ParameterHooks"/>, the update is
/// <see cref="ChunkedAdam"/>, and ranks share the chunks through <see cref="ChunkCollectives"/>. This class wires
/// them together and runs the step.
/// </summary>
public sealed class ChunkedEngine : ITrainingEngine
{
    private readonly Module<Tensor, Tensor> model;
    private readonly ChunkEngineOptions options;
    private readonly TrainingConfig config;
    private readonly TierMemory device;
    private readonly TierMemory host;
    private readonly ChunkLists chunks;
    private readonly List<ManagedParameter> ordered;
    private readonly IterationCounters iteration = new();
    private readonly NonModelTracer tracer;
    private readonly PlacementPolicy placement;
    private readonly ChunkMover mover;
    private readonly ChunkCollectives collectives;
    private readonly ParameterHooks hooks;
    private readonly ChunkedAdam adam;
    private readonly ChunkStateAccess state;
    private readonly EngineProfile profile;
    private readonly DiskPlacement? disk;
    private readonly Tiers.DiskIterationMeter? diskMeter;
    private EngineStatistics statistics;

    /// <param name="communicator">The data-parallel job this rank belongs to; null or one rank trains alone.</param>
    /// <param name="initializer">Given for a model built with placeholder parameters (<see cref="ParameterPlaceholders"/>):
    /// each parameter is initialised in its chunk slot (streamed build), never as a whole fp32 model. Null: the model's values are packed.</param>
    public ChunkedEngine(Module<Tensor, Tensor> model, TrainingConfig config, Device computeDevice, ChunkEngineOptions options, Tensor? sampleInput = null,
        ICommunicator? communicator = null, IParameterInitializer? initializer = null)
    {
        var comm = communicator is { Size: > 1 } ? communicator : null; // on a GPU its collectives are staged through host memory (HostStagedCommunicator)
        Layers.ChunkAwareModel.Prepare(model); // standard layers become chunk-aware ones; unmanageable ones are refused here
        this.model = model;
        this.config = config;
        this.options = options;
        Device = computeDevice;
        var computeType = PlainEngine.ComputeType(config.Precision);
        Scaler = LossScaler.From(config);
        device = new TierMemory(Tier.Device, computeDevice, options.DeviceMemory);
        host = new TierMemory(Tier.Host, CPU, options.HostMemory)
        {
            Pinning = HostPinning.For(computeDevice, options.CudaRuntime ?? AsyncChunkCopy.DefaultCudaRuntime, options.Warning),
        };
        model.train();
        // Parameters take the compute precision first; their fp32 masters are made from those values,
        // as the plain engine does, so both engines start from identical weights.
        if (computeType != ScalarType.Float32) model.to(computeType);

        var order = ParameterPacking.ExecutionOrder(model, sampleInput);
        if (initializer is null && order.FirstOrDefault(p => ParameterPlaceholders.IsPlaceholder(p.Parameter)) is { } placeholder)
            throw new ArgumentException($"parameter '{placeholder.Name}' is a placeholder (the model was built in a ParameterPlaceholders scope): pass the model as the engine's initializer.");
        var specs = order.Select(p => new TensorSpec(p.Name, p.Parameter.numel())).ToList();
        var layout = options.ChunkSize is long size
            ? ChunkLayout.Pack(specs, size)
            : ChunkSizeSearch.ForDevice(specs, options.DeviceMemory, Runtime.TensorMemory.ElementSize(computeType));
        chunks = new ChunkLists(layout, comm?.Size ?? 1, comm?.Rank ?? 0, accumulate: config.GradientAccumulationSteps > 1);
        // The budgets must be what the process uses: freed large blocks must not stay resident.
        if (LargeBlockPolicy.ShouldReturn(Environment.GetEnvironmentVariable(LargeBlockPolicy.Variable)))
            Runtime.NativeAllocator.ReturnLargeBlocks();
        ordered = order.Select(p => new ManagedParameter(p.Name, p.Parameter, p.Parameter.shape.ToArray(), layout[p.Name],
            decay: !config.Optimizer.NoDecayOnBiasAndNorm || p.Parameter.dim() >= 2)).ToList();
        var managed = ordered.ToDictionary(mp => mp.Parameter, (IEqualityComparer<Parameter>)ReferenceEqualityComparer.Instance);

        tracer = new NonModelTracer(device, host, iteration, options.NonModelReaderFor(computeDevice));
        placement = new PlacementPolicy(options);
        mover = new ChunkMover(chunks, device, host, placement, tracer, iteration, options.DeviceMemory) { CopyWithinOneMemory = options.CopyWithinOneMemory };
        // Data parallelism fetches remote chunks through its own buffers: no read-ahead there. Nor where moves copy nothing (a CPU device).
        if (options.Prefetch && comm is null && mover.Copies(host, device))
            mover.Prefetcher = new ChunkPrefetcher(chunks, device, host, placement, tracer, iteration, mover, AsyncChunkCopy.For(computeDevice, isPinned: PinnedTest(host.Pinning)), options.DeviceMemory);
        collectives = new ChunkCollectives(comm, config.Distributed.Mode, chunks, device, host, computeType, iteration, tracer);
        disk = DiskPlacement.Open(options, chunks, computeType, host, placement, tracer, collectives.BindReleased);
        mover.Disk = disk;
        collectives.Disk = disk;
        if (disk is not null) // CPU payloads take whole O_DIRECT reads of their slot: no staging copy
        {
            host.PayloadAlignment = device.PayloadAlignment = Tiers.StagingBuffer.Alignment;
            // A CPU device and the host are one memory: a chunk read from disk into one tier reuses a buffer the other pooled.
            if (device.SharesMemoryWith(host)) (host.Sibling, device.Sibling) = (device, host);
        }
        if (disk is not null) disk.Prefetcher = mover.Prefetcher;
        try
        {
            if (initializer is not null)
                StreamedPacking.Pack(chunks, ordered, computeType, host, collectives.BindReleased, model.named_parameters(), initializer, disk);
            else
                ParameterPacking.Pack(chunks, ordered, computeType, host, collectives.BindReleased, disk);
        }
        catch
        {
            disk?.Store.Dispose(); // its files go now, not at exit
            throw;
        }
        hooks = new ParameterHooks(model, chunks, managed, mover, collectives, tracer, EnterMoment, computeDevice);
        adam = new ChunkedAdam(chunks, AdamSettings.From(config.Optimizer), computeType, options.TensorAdamOnDevice, device, collectives, iteration, disk);
        state = new ChunkStateAccess(chunks, ordered, disk);
        profile = new EngineProfile(chunks, device, placement, tracer);
        if (placement.IsStatic)
            foreach (var c in chunks.Param.Where(c => c.Payload is not null)) mover.Move(c, device, "static placement of parameter chunks");
        GC.Collect();
        GC.WaitForPendingFinalizers(); // tensors dropped before now must not be counted as activations later
        Runtime.NativeAllocator.Trim(); // what packing freed (a built model's own storage, the order pass's temporaries)
        tracer.TakeBaseline();
        diskMeter = disk is null ? null : new Tiers.DiskIterationMeter(disk.Store.Statistics, disk.Store.Direct);
        statistics = new EngineStatistics(Chunks: new ChunkStatistics(chunks.Count, layout.ChunkSize, layout.Utilisation));
    }

    /// <summary>A host source is pinned when it lies in a buffer the host tier registered, or libtorch says so; null: libtorch's word alone.</summary>
    private static Func<Tensor, bool>? PinnedTest(HostPinning? pinning) => pinning is null ? null : t => pinning.Covers(t) || t.is_pinned();

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

    /// <summary>
    /// As <see cref="Initialize"/>, streamed: the model is built with placeholder parameters (<see cref="ParameterPlaceholders"/>)
    /// and each is initialised in its chunk slot by the model itself, so the whole fp32 model never exists (with a disk tier,
    /// finished chunks spill as the budgets require). The values equal those <see cref="Initialize"/> gives for the same seed.
    /// </summary>
    public static ChunkedEngine InitializeStreamed<TModel>(Func<TModel> modelFactory, TrainingConfig config, Tensor? sampleInput = null)
        where TModel : Module<Tensor, Tensor>, IParameterInitializer
    {
        ConfigLoader.Validate(config);
        Runtime.TorchRuntime.EnsureLoaded();
        var device = Runtime.TorchRuntime.ResolveDevice(config.Device);
        manual_seed(config.Seed);
        TModel model;
        using (ParameterPlaceholders.Scope(PlainEngine.ComputeType(config.Precision)))
            model = modelFactory();
        try
        {
            // A parameter made with its values would be overwritten, and its construction's draws made twice.
            if (model.named_parameters().FirstOrDefault(p => p.parameter.numel() > 1 && !ParameterPlaceholders.IsPlaceholder(p.parameter)) is { name: not null } built)
                throw new ArgumentException($"parameter '{built.name}' of {typeof(TModel).Name} was built with values: create it with ParameterPlaceholders.Empty/Zeros/Ones " +
                                            "for a streamed build, or use ChunkedEngine.Initialize.");
            return new ChunkedEngine(model, config, device, ChunkEngineOptions.From(config, device), sampleInput, initializer: model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public string Name => placement.IsStatic ? "chunked (static)" : "chunked";
    public Module<Tensor, Tensor> Model => model;
    public Device Device { get; }
    public ChunkLayout Layout => chunks.Layout;
    public EngineStatistics Statistics => statistics;
    public TierMemory DeviceTier => device;
    public TierMemory HostTier => host;
    public bool WarmingUp => tracer.WarmingUp;
    public MomentTrace Trace => tracer.Trace;
    public LossScaler Scaler { get; }

    /// <summary>Adam's step count (bias correction); saved and restored by checkpoints.</summary>
    public long OptimizerStepCount { get => adam.StepCount; set => adam.StepCount = value; }

    /// <summary>Chunk indices whose master, momentum and variance live on the device (hybrid Adam).</summary>
    public IReadOnlyList<int> OptimizerChunksOnDevice => chunks.Master.Where(c => c.Tier == device).Select(c => c.Index).ToList();

    /// <summary>Largest non-model bytes measured at any moment of any iteration so far.</summary>
    public long PeakNonModelObserved => tracer.PeakNonModelObserved;

    /// <summary>Largest device bytes seen at any moment: resident chunks + measured non-model data.</summary>
    public long PeakDeviceBytes => mover.PeakDeviceBytes;

    /// <summary>The smallest device budget the checks so far would have accepted (what the estimator's device need is tested against).</summary>
    public long DeviceNeedObserved => mover.DeviceNeedObserved;

    /// <summary>The ranks sharing the model (1 without data parallelism).</summary>
    public int Ranks => chunks.Ranks;

    /// <summary>This engine's rank (0 without data parallelism).</summary>
    public int Rank => chunks.Rank;

    /// <summary>Chunks per list, padding included (the layout's count when training alone).</summary>
    public int ChunkCount => chunks.Count;

    /// <summary>The rank that keeps chunk <paramref name="index"/>'s optimizer state.</summary>
    public int OwnerOf(int index) => chunks.OwnerOf(index);

    /// <summary>Bytes of chunk payloads this rank holds now, both tiers (pooled buffers not counted).</summary>
    public long ModelDataBytesHeld => chunks.PayloadBytes;

    /// <summary>Chunk bytes resident in a tier, by kind (what the profile records at each moment).</summary>
    public KindBytes ChunkBytesIn(Tier tier) => chunks.BytesIn(tier);

    /// <summary>The disk tier's traffic (bytes, seconds, clean evictions skipped); null without disk_dir.</summary>
    public Tiers.IoStatistics? DiskStatistics => disk?.Store.Statistics;

    /// <summary>True when master, momentum and variance live on disk and the optimizer streams them.</summary>
    public bool OptimizerStateOnDisk => disk?.StateOnDisk ?? false;

    /// <summary>Bytes of the disk tier's staging buffers (host memory beside the host budget); 0 without disk_dir.</summary>
    public long DiskBufferBytes => disk?.Store.BufferBytes ?? 0;

    /// <summary>Bytes of the optimizer's slice pool, part of <see cref="DiskBufferBytes"/>; 0 without disk_dir.</summary>
    public long DiskStreamingBytes => disk is null ? 0 : disk.Store.Streaming.Count * disk.Store.Streaming.BytesEach;

    public IReadOnlyList<string> ParameterNames => state.ParameterNames;
    public Tensor ReadChunk(ChunkKind kind, int index) => state.ReadChunk(kind, index);
    public void WriteChunk(ChunkKind kind, int index, Tensor values) => state.WriteChunk(kind, index, values);
    public Tensor ReadState(string name, StateKind kind) => state.ReadState(name, kind);
    public void WriteState(string name, StateKind kind, Tensor value) => state.WriteState(name, kind, value);

    /// <summary>Runs the model on <paramref name="input"/> (on <see cref="Device"/>); the hooks place the chunks.</summary>
    public Tensor Forward(Tensor input) => model.call(input);

    public void Backward(Tensor loss)
    {
        foreach (var mp in ordered) mp.Gradient.BeginBackward();
        if (Scaler.Scale == 1) loss.backward();
        else
        {
            using var scaled = loss * Scaler.Scale;
            scaled.backward();
        }
        BackwardHandles.ReleaseReturned();
        ParameterEvents.RethrowCaptured();
        collectives.ReduceRemainingGradients();
        foreach (var mp in ordered) mp.Gradient.EndBackward(mp.Name);
    }

    public StepOutcome Step(double learningRate)
    {
        EnterMoment(MomentKind.OptimizerStep, "optimizer");
        using var _ = no_grad();
        // Parameters that received no gradient (unused this step) still hold weights in their slot: zero them.
        foreach (var mp in ordered.Where(m => !chunks.Accumulating && m.Gradient.Content != SlotContent.Gradient && chunks.HasState(m.Place.Chunk)))
        {
            var chunk = chunks.Param[mp.Place.Chunk];
            using var values = disk.ReadValues(chunk);
            using (var slot = values.narrow(0, mp.Place.Offset, mp.Place.Numel)) slot.zero_();
            disk.WroteValues(chunk, values);
        }

        var decision = Scaler.Decide(adam.GlobalGradientNorm(), config.GradientClipping);
        if (!decision.Skip)
        {
            adam.Update(learningRate, decision.GradientMultiplier);
            ClearGradientState();
            collectives.ReleaseRemoteChunks(); // copies fetched before this update are stale: every rank fetches again at the next use
        }
        else
        {
            ZeroGrad(); // the slots hold (overflowed) gradients: the weights come back from the fp32 masters
        }
        foreach (var mp in ordered) mp.MoveTo(TensorState.Hold, tracer.Label);
        EndIteration();
        statistics = statistics with { GradNorm = decision.GradNorm, LossScale = Scaler.Scale };
        return new StepOutcome(decision.GradNorm, decision.Skip);
    }

    /// <summary>
    /// Drops gradients gathered since the last step without updating: parameter slots that hold gradients get
    /// their weights back from the masters, and accumulation chunks are cleared.
    /// </summary>
    public void ZeroGrad()
    {
        using var _ = no_grad();
        for (int i = 0; i < chunks.Count; i++)
        {
            if (!chunks.HasState(i)) continue;
            long used = chunks.Used(i);
            using var masterValues = disk.ReadValues(chunks.Master[i]);
            using var paramValues = disk.ReadValues(chunks.Param[i]);
            using (var master = masterValues.narrow(0, 0, used))
            using (var param = paramValues.narrow(0, 0, used))
                param.copy_(master);
            disk.WroteValues(chunks.Param[i], paramValues);
        }
        ClearGradientState();
        collectives.ReleaseRemoteChunks();
    }

    private void ClearGradientState()
    {
        foreach (var g in chunks.Gradient) g.Payload?.zero_();
        foreach (var mp in ordered) mp.Gradient.Clear();
    }

    /// <summary>A moment begins: the tracer measures it, the mover makes room by the placement's allowance, the profile records it.</summary>
    private void EnterMoment(MomentKind kind, string module)
    {
        if (tracer.Enter(kind, module, model.training, profile.BeginIteration) is not long nonModel) return;
        mover.ArriveAt(nonModel, model.training);
        profile.Moment(kind, module, nonModel);
    }

    private void EndIteration()
    {
        bool warmup = tracer.WarmingUp;
        if (warmup)
        {
            tracer.FinishWarmup();
            placement.Plan(tracer.Trace, collectives.BufferBytes);
            if (placement.OptimizerMargin(tracer.Trace, chunks.Param.Sum(c => c.Bytes)) is long margin) mover.MoveOptimizerStateToDevice(margin);
        }
        tracer.EndIteration(checkLength: !warmup);
        profile.EndIteration();
        // Held bytes are read after the update: remote copies are released.
        var done = iteration.Snapshot(mover.DeviceNeedObserved, chunks.Param.Count(c => c.Tier == device), chunks.Master.Count(c => c.Tier == device),
            collectives.Active ? ModelDataBytesHeld : null) with { HostBytes = host.InUseBytes, PeakHostBytes = host.PeakInUseBytes };
        statistics = statistics with { Chunks = statistics.Chunks! with { LastIteration = done }, Disk = diskMeter?.EndIteration(profile.Recorder) };
    }

    /// <summary>
    /// Records every moment (memory by tier and chunk kind), chunk event and phase into <paramref name="recorder"/>
    /// from now on; the model description labels the run.
    /// </summary>
    public void AttachProfiler(ProfileRecorder recorder, string modelDescription)
    {
        profile.Attach(recorder, modelDescription, Name, options);
        mover.Profiler = recorder;
    }

    /// <summary>Replaces the read-ahead's copy engine (the engine disposes it); false when there is no read-ahead (off, or a CPU device, where moves copy nothing).</summary>
    public bool UseChunkCopy(IAsyncChunkCopy copier)
    {
        if (mover.Prefetcher is not { } prefetcher) return false;
        prefetcher.Copier = copier;
        return true;
    }

    /// <summary>Points the parameters of an on-disk chunk at a copy of its values read from disk.</summary>
    /// <summary>
    /// Whether <see cref="Dispose"/> gives every parameter its values back in storage of its own (true, the default: the
    /// model stays usable) or leaves the parameters empty (for an owner about to dispose the model: no copy of the model).
    /// </summary>
    public bool KeepParametersOnDispose { get; set; } = true;

    private static void EmptyParameters(IEnumerable<ManagedParameter> parameters)
    {
        foreach (var mp in parameters)
        {
            using var none = empty(0, dtype: mp.Parameter.dtype, device: mp.Parameter.device);
            mp.Parameter.set_(none);
        }
    }

    private void RebindFromDisk(Chunk c)
    {
        using var values = disk!.Read(c);
        ChunkMover.Rebind(c, values);
    }

    private bool disposed;

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        mover.Prefetcher?.Dispose();
        tracer.Dispose();
        hooks.Dispose();
        foreach (var mp in ordered) mp.Gradient.Dispose();
        // Give parameters their own storage back so the model stays usable after the engine is gone, one chunk at a time:
        // the optimizer's chunks are freed first, and each parameter chunk (read back from disk if it is there) as soon as
        // its parameters hold their copies, so that the copies never sit beside the whole model's chunks. An owner that
        // disposes the model next (the CLI at exit) sets KeepParametersOnDispose false: the parameters are emptied instead,
        // since a model larger than memory cannot be given back whole (a 3.2B run reached 23 GiB at exit that way).
        using (no_grad())
        {
            foreach (var c in chunks.All.Where(c => c.Kind != ChunkKind.Param)) Release(c);
            foreach (var group in ordered.GroupBy(mp => mp.Place.Chunk))
            {
                var chunk = chunks.Param[group.Key];
                if (!KeepParametersOnDispose) EmptyParameters(group);
                else if (chunk.OnDisk)
                {
                    try { RebindFromDisk(chunk); } // the parameters now own the values read
                    catch (IOException) { EmptyParameters(group); } // the disk failed (the run stops on that error)
                }
                else
                    foreach (var mp in group)
                    {
                        using var own = mp.Parameter.detach().clone();
                        mp.Parameter.set_(own);
                    }
                Release(chunk);
            }
        }
        foreach (var c in chunks.All) Release(c);
        device.Dispose();
        host.Dispose();
        collectives.Dispose();
        disk?.Store.Dispose(); // the chunk files are removed
    }

    /// <summary>Frees a chunk's payload now (not into its tier's pool): a step of <see cref="Dispose"/>.</summary>
    private void Release(Chunk c)
    {
        if (c.Payload is null) return;
        var tier = c.Tier!;
        profile.Recorder?.ChunkEvent(ChunkEventType.Release, c.Kind, c.Index, tier.Tier, null, c.Bytes);
        tier.Return(c.Drop()!);
        tier.Trim();
    }
}
