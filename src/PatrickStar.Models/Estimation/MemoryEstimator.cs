using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// "Will it fit?" for GPT training, computed from the sizes before anything is allocated. Model data uses the
/// chunk layout the engine would build (same specs, same search); non-model memory follows the ops of
/// <see cref="GptModel"/> and was calibrated against mallinfo2 measurements (<see cref="ActivationModel"/>). For the
/// chunk engine the device need is what its warm-up check compares with the budget: per stretch between two moments,
/// the sampled non-model peak plus the parameter chunks the next module needs, plus the collectives' buffers.
/// </summary>
public static class MemoryEstimator
{
    /// <summary>
    /// Head-room over the modelled device need of the chunk engine. The engine samples its non-model peaks, and the same
    /// run measured twice differed by up to 9% (tests/PatrickStar.Tests/Estimation/EstimateAgreesWithEngineTests); a
    /// "fits" must not fail at warm-up, and a "does not fit" must stay within 25% of the measured need.
    /// </summary>
    public const double SafetyMargin = 0.12;

    /// <summary>
    /// Matrix-product buffers the CPU runtime keeps: MKL's memory manager pools the packing buffers of every new product
    /// shape for the life of the process, so the engine measures them as non-model memory (gpt2-tiny, batch 2 x 64:
    /// device need 143.8 MiB, 136.7 MiB with MKL_DISABLE_FAST_MM=1; 6.5–7.3 MiB over several shapes with 2 threads).
    /// </summary>
    public const long RuntimeBuffers = 8L << 20;

    /// <summary>The estimate for a training config with the given budgets (see <see cref="EstimateBudgets.For"/> for the engine's defaults).</summary>
    public static EstimateRequest RequestFor(TrainingConfig config, GptConfig model, long? deviceMemory, long hostMemory, int ranks = 1) =>
        RequestFor(config, new ModelChoice(model, null), deviceMemory, hostMemory, ranks);

    /// <summary>As above, for either family.</summary>
    public static EstimateRequest RequestFor(TrainingConfig config, ModelChoice model, long? deviceMemory, long hostMemory, int ranks = 1) =>
        new(model.Sizes, config.Precision, config.MicroBatchSize, config.SequenceLength, config.ActivationCheckpointing,
            config.GradientAccumulationSteps, deviceMemory, hostMemory, ranks, config.Engine, config.Chunks.Placement, config.Chunks.ChunkSize,
            config.Distributed.Mode, model.Llama, HostLoss(config.Device));

    /// <summary>
    /// Whether the loss will run in the host kernel (<see cref="CrossEntropyKernel"/>): on a CPU device ("cpu", or "auto" without
    /// CUDA) where the kernel is available. Anything else (a GPU, an unknown device) gets the tensor ops' need.
    /// </summary>
    public static bool HostLoss(string device)
    {
        string d = device.Trim().ToLowerInvariant();
        if (!CrossEntropyKernel.Available || d is not ("cpu" or "auto")) return false;
        try { return d == "cpu" || !TorchSharp.torch.cuda.is_available(); }
        catch (TypeInitializationException) { return false; } // libtorch not loadable: no device is known
    }

    /// <param name="suggestKnobs">When the run does not fit, try knobs and their combinations (re-running the estimate) and report those that help.</param>
    public static MemoryEstimate Estimate(EstimateRequest r, bool suggestKnobs = true)
    {
        r.Model.Validate();
        r.Llama?.Validate();
        if (r.MicroBatch < 1 || r.Sequence < 1 || r.GradientAccumulation < 1 || r.Ranks < 1)
            throw new ArgumentException("micro-batch, sequence, gradient accumulation and ranks must each be at least 1.");
        if (r.Sequence > r.Model.ContextLength)
            throw new ArgumentException($"sequence {r.Sequence} exceeds the model's context length n_positions = {r.Model.ContextLength}.");
        if (r.Engine is not ("plain" or "chunked"))
            throw new ArgumentException($"engine '{r.Engine}' is not known; use plain or chunked.");

        var estimate = r.Chunked ? EstimateChunked(r) : EstimatePlain(r);
        if (suggestKnobs && !estimate.Fits) estimate.Knobs = FitKnobs.Find(estimate);
        return estimate;
    }

    /// <summary>The non-model (activation) peak of one forward+backward; see <see cref="ActivationModel.Activations"/>.</summary>
    public static ActivationEstimate Activations(GptConfig c, Precision precision, long batch, long seq, bool checkpointing, bool chunked) =>
        ActivationModel.Activations(c, precision, batch, seq, checkpointing, chunked);

    private static ActivationEstimate Activations(EstimateRequest r, bool chunked) => r.Llama is { } llama
        ? LlamaEstimates.Activations(llama, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, chunked, r.HostLoss)
        : ActivationModel.Activations(r.Model, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, chunked, r.HostLoss);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(object, long?, long?, int), ChunkLayout> Layouts = new();

    private static MemoryEstimate EstimatePlain(EstimateRequest r)
    {
        // PlainEngine: the parameters and their autograd gradients in the compute precision; bf16 adds fp32
        // masters and fp32 gradient accumulators; Adam's moments are fp32. Data parallel would replicate all of it.
        long p = r.ParameterCount;
        int e = ActivationModel.ParameterBytes(r.Precision);
        var items = new List<ModelDataItem>
        {
            new("param", p * e, "device"),
            new("gradient", p * e, "device"),
        };
        if (r.Precision is Precision.Bf16 or Precision.Bf16Fp32)
        {
            items.Add(new("master (fp32)", p * 4, "device"));
            items.Add(new("gradient accumulator (fp32)", p * 4, "device"));
        }
        items.Add(new("momentum", p * 4, "device"));
        items.Add(new("variance", p * 4, "device"));
        var act = Activations(r, chunked: false);
        long model = items.Sum(i => i.Bytes);
        var tiers = new List<TierDemand>
        {
            new("device", RoundUpMiB(model + act.Peak), r.DeviceMemory, $"{Bytes.Format(model)} model data + {Bytes.Format(act.Peak)} activations"),
        };
        return new MemoryEstimate(r, p, null, items, act, model, "(all parameters)", tiers);
    }

    private static MemoryEstimate EstimateChunked(EstimateRequest r)
    {
        var specs = r.Llama is { } llama ? LlamaEstimates.Parameters(llama) : GptParameterSpecs.List(r.Model);
        // As the engine does: the layout is searched (or packed) for one rank, then padded with empty chunks to a
        // multiple of the ranks, each of which owns an equal share of the chunk indices.
        // The search takes seconds for the largest presets and the knobs re-run it: keep the layouts found.
        int e = ActivationModel.ParameterBytes(r.Precision);
        var layout = Layouts.GetOrAdd(((object?)r.Llama ?? r.Model, r.ChunkSize, r.DeviceMemory, e), _ =>
            r.ChunkSize is long size ? ChunkLayout.Pack(specs, size) : ChunkSizeSearch.ForDevice(specs, r.DeviceMemory, e));
        long perRankChunks = (layout.ChunkCount + r.Ranks - 1) / r.Ranks;
        long elements = perRankChunks * layout.ChunkSize;
        long paramChunk = layout.ChunkSize * e;
        bool pinned = r.Placement == ChunkPlacement.Static;
        var items = new List<ModelDataItem>
        {
            new("param", elements * e, pinned ? "device (pinned)" : "host, moved to the device per module"),
            new("master (fp32)", elements * 4, "host"),
            new("momentum", elements * 4, "host"),
            new("variance", elements * 4, "host"),
        };
        if (r.GradientAccumulation > 1) items.Add(new("gradient (fp32, accumulation)", elements * 4, "host"));

        // Each module's working set: the chunks holding its parameters (with N ranks gathering, every such chunk's whole
        // communication group comes to the device; broadcasting brings the chunk alone).
        int group = r.DataParallel == DataParallelMode.Gather ? r.Ranks : 1;
        var modules = r.Llama is { } l ? LlamaEstimates.Modules(l) : GptParameterSpecs.Modules(r.Model);
        var workingSets = modules.ToDictionary(m => m.Name,
            m => m.Parameters.Select(n => layout[n].Chunk / group).Distinct().Count() * group * paramChunk);
        var (workingModule, workingSet) = workingSets.MaxBy(kv => kv.Value);

        long paramBytes = items[0].Bytes;
        // Collectives borrow a device buffer of a chunk group (gather) or of one chunk (broadcast).
        long comm = r.Ranks == 1 ? 0 : paramChunk * (r.DataParallel == DataParallelMode.Gather ? r.Ranks : 1);
        // Pinned parameters stay on the device; with N ranks a remote group is gathered beside them while in use.
        long ChunksWith(string? module) =>
            pinned ? paramBytes + (r.Ranks > 1 ? (r.Ranks - 1) * paramChunk : 0) : module is null ? workingSet : workingSets[module];
        var phases = r.Llama is { } lp
            ? LlamaEstimates.Phases(lp, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, r.HostLoss)
            : ActivationModel.Phases(r.Model, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, r.HostLoss);
        var binding = phases.MaxBy(p => p.Bytes + ChunksWith(p.NextModule))!;
        long deviceChunks = ChunksWith(binding.NextModule);
        long modelled = binding.Bytes + deviceChunks + comm;
        long margin = (long)(modelled * SafetyMargin);
        var act = new ActivationEstimate(Activations(r, chunked: true).Saved,
            phases.Max(p => p.Bytes), phases.MaxBy(p => p.Bytes)!.Name);

        long model = items.Sum(i => i.Bytes);
        var tiers = new List<TierDemand>
        {
            new("device", RoundUpMiB(modelled + RuntimeBuffers + margin), r.DeviceMemory,
                $"{Bytes.Format(deviceChunks)} of parameter chunks ({(pinned ? "all of them, pinned" : $"the working set of {binding.NextModule ?? workingModule}")}) + " +
                $"{Bytes.Format(binding.Bytes)} non-model at {binding.Name}{(comm > 0 ? $" + {Bytes.Format(comm)} collective buffers" : "")} + " +
                $"{Bytes.Format(RuntimeBuffers)} of MKL's buffer pool + {Bytes.Format(margin)} margin ({SafetyMargin * 100:0}%: the engine samples its peaks)"),
            // The engine builds every chunk list in host memory first (parameter chunks move to the device after),
            // so the host must hold all the chunks of this rank.
            new("host", model, r.HostMemory, $"every chunk list of this rank: {perRankChunks} chunks x {layout.ChunkSize:N0} elements in {items.Count} lists"),
        };
        return new MemoryEstimate(r, r.ParameterCount, layout, items, act, workingSet, workingModule, tiers);
    }

    /// <summary>Device needs are whole MiB, so that every table, message and suggested flag shows the same figure.</summary>
    internal static long RoundUpMiB(long bytes) => (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20);
}
