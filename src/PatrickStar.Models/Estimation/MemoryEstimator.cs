using System.Globalization;
using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;

namespace PatrickStar.Models.Estimation;

/// <summary>What the estimator is asked about: a model, a run's shape and the memory it may use.</summary>
/// <param name="DeviceMemory">Device budget in bytes; null when unknown (nothing is then checked on the device).</param>
/// <param name="Ranks">Data-parallel ranks; the chunk engine shards every chunk list 1/N per rank (ZeRO-3 at chunk granularity).
/// The plain engine replicates everything, so ranks do not change its per-rank memory.</param>
/// <param name="ChunkSize">Elements per chunk; null: the size <see cref="ChunkSizeSearch.ForDevice"/> picks, as the engine does.</param>
public sealed record EstimateRequest(
    GptConfig Model,
    Precision Precision,
    int MicroBatch,
    int Sequence,
    bool Checkpointing,
    int GradientAccumulation,
    long? DeviceMemory,
    long HostMemory,
    int Ranks = 1,
    string Engine = "chunked",
    ChunkPlacement Placement = ChunkPlacement.Dynamic,
    long? ChunkSize = null)
{
    public bool Chunked => Engine == "chunked";
}

/// <summary>One kind of model data: its bytes per rank and the tier it lives on.</summary>
public sealed record ModelDataItem(string Kind, long Bytes, string Placement);

/// <summary>
/// The non-model (activation) peak of one forward+backward and where it happens. <see cref="Saved"/>: tensors
/// forward keeps for backward (all of them at the start of backward); <see cref="Peak"/>: the largest total at
/// any phase of backward (saved tensors still alive plus that phase's gradients and temporaries).
/// </summary>
public sealed record ActivationEstimate(long Saved, long Peak, string PeakPhase);

/// <summary>Bytes one tier must hold against what it has; <see cref="Available"/> null = unknown, not checked.</summary>
public sealed record TierDemand(string Tier, long Needed, long? Available, string What)
{
    public long Short => Available is long a ? Math.Max(0, Needed - a) : 0;
}

/// <summary>A change that makes the run fit, found by re-running the estimate with it applied.</summary>
public sealed record FitKnob(string Change, string Flags, MemoryEstimate Result);

/// <summary>The answer: model data, activations, per-tier demand, whether it fits and, if not, what would.</summary>
public sealed class MemoryEstimate
{
    internal MemoryEstimate(EstimateRequest request, long parameters, ChunkLayout? layout, IReadOnlyList<ModelDataItem> modelData,
        ActivationEstimate activations, long workingSet, string workingSetModule, IReadOnlyList<TierDemand> tiers)
    {
        Request = request;
        Parameters = parameters;
        Layout = layout;
        ModelData = modelData;
        Activations = activations;
        WorkingSetBytes = workingSet;
        WorkingSetModule = workingSetModule;
        Tiers = tiers;
    }

    public EstimateRequest Request { get; }
    public long Parameters { get; }

    /// <summary>The chunk layout the engine would build (chunked engine only).</summary>
    public ChunkLayout? Layout { get; }

    /// <summary>Model data per kind, per rank.</summary>
    public IReadOnlyList<ModelDataItem> ModelData { get; }
    public long ModelDataBytes => ModelData.Sum(m => m.Bytes);
    public ActivationEstimate Activations { get; }

    /// <summary>Dynamic placement: parameter-chunk bytes the largest module needs on the device at once.</summary>
    public long WorkingSetBytes { get; }
    public string WorkingSetModule { get; }
    public IReadOnlyList<TierDemand> Tiers { get; }
    public bool Fits => Tiers.All(t => t.Short == 0);

    /// <summary>Changes that would make a run that does not fit fit (empty when it fits or nothing tried helps).</summary>
    public IReadOnlyList<FitKnob> Knobs { get; internal set; } = Array.Empty<FitKnob>();

    /// <summary>Why it does not fit (bytes needed against available per tier) and the changes that would make it fit.</summary>
    public string Explain()
    {
        var r = Request;
        string run = string.Create(CultureInfo.InvariantCulture,
            $"{Parameters:N0} parameters, {r.Engine}{(r.Chunked ? $" ({r.Placement.ToString().ToLowerInvariant()})" : "")} engine, {PrecisionNames.Name(r.Precision)}, " +
            $"micro-batch {r.MicroBatch} x {r.Sequence} tokens{(r.Checkpointing ? ", activation checkpointing" : "")}{(r.Ranks > 1 ? $", {r.Ranks} ranks" : "")}");
        if (Fits) return $"The run fits: {run}.";
        var lines = new List<string> { $"The run does not fit in memory ({run}):" };
        foreach (var t in Tiers.Where(t => t.Short > 0))
            lines.Add(string.Create(CultureInfo.InvariantCulture,
                $"  {t.Tier} needs {Bytes.Format(t.Needed)} ({t.Needed:N0} bytes: {t.What}) but only {Bytes.Format(t.Available!.Value)} ({t.Available.Value:N0} bytes) is available; short by {Bytes.Format(t.Short)}."));
        if (Knobs.Count == 0) lines.Add("  No single change tried (checkpointing, micro-batch, sequence, ranks, memory) makes it fit: choose a smaller model.");
        else
        {
            lines.Add("  Any one of these makes it fit:");
            foreach (var k in Knobs) lines.Add($"    {k.Change} ({k.Flags})");
        }
        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>
/// "Will it fit?" for GPT training, computed from the sizes before anything is allocated. Model data uses the
/// chunk layout the engine would build (same specs, same search); activations follow the ops of
/// <see cref="GptModel"/> and were calibrated against mallinfo2 measurements (see <see cref="ActivationMeter"/>).
/// </summary>
public static class MemoryEstimator
{
    /// <summary>The estimate for a training config with the given budgets (or those the engine would take).</summary>
    public static EstimateRequest RequestFor(TrainingConfig config, GptConfig model, long? deviceMemory, long hostMemory, int ranks = 1) =>
        new(model, config.Precision, config.MicroBatchSize, config.SequenceLength, config.ActivationCheckpointing,
            config.GradientAccumulationSteps, deviceMemory, hostMemory, ranks, config.Engine, config.Chunks.Placement, config.Chunks.ChunkSize);

    /// <param name="suggestKnobs">When the run does not fit, try each knob (re-running the estimate) and report those that help.</param>
    public static MemoryEstimate Estimate(EstimateRequest r, bool suggestKnobs = true)
    {
        r.Model.Validate();
        if (r.MicroBatch < 1 || r.Sequence < 1 || r.GradientAccumulation < 1 || r.Ranks < 1)
            throw new ArgumentException("micro-batch, sequence, gradient accumulation and ranks must each be at least 1.");
        if (r.Sequence > r.Model.ContextLength)
            throw new ArgumentException($"sequence {r.Sequence} exceeds the model's context length n_positions = {r.Model.ContextLength}.");
        if (r.Engine is not ("plain" or "chunked"))
            throw new ArgumentException($"engine '{r.Engine}' is not known; use plain or chunked.");

        var estimate = r.Chunked ? EstimateChunked(r) : EstimatePlain(r);
        if (suggestKnobs && !estimate.Fits) estimate.Knobs = FindKnobs(estimate);
        return estimate;
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(GptConfig, long?, int, long?, int), ChunkLayout> Layouts = new();

    /// <summary>Bytes of one stored parameter (and of its gradient in the parameter's dtype): bf16 for both bf16 modes.</summary>
    private static int ParameterBytes(Precision p) => p is Precision.Bf16 or Precision.Bf16Fp32 ? 2 : 4;

    /// <summary>Bytes of one activation element: bf16 with fp32 compute keeps its activations in fp32.</summary>
    private static int ActivationBytes(Precision p) => p == Precision.Bf16 ? 2 : 4;

    private static MemoryEstimate EstimatePlain(EstimateRequest r)
    {
        // PlainEngine: the parameters and their autograd gradients in the compute precision; bf16 adds fp32
        // masters and fp32 gradient accumulators; Adam's moments are fp32. Data parallel would replicate all of it.
        long p = r.Model.ParameterCount;
        int e = ParameterBytes(r.Precision);
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
        var act = Activations(r.Model, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, chunked: false);
        long model = items.Sum(i => i.Bytes);
        var tiers = new List<TierDemand>
        {
            new("device", model + act.Peak, r.DeviceMemory, $"{Bytes.Format(model)} model data + {Bytes.Format(act.Peak)} activations"),
        };
        return new MemoryEstimate(r, p, null, items, act, model, "(all parameters)", tiers);
    }

    private static MemoryEstimate EstimateChunked(EstimateRequest r)
    {
        var specs = GptParameterSpecs.List(r.Model);
        // The engine packs with no padding for one rank; with N ranks every rank owns an equal share of the chunks.
        // The search takes seconds for the largest presets and the knobs re-run it: keep the layouts found.
        int e = ParameterBytes(r.Precision);
        var layout = Layouts.GetOrAdd((r.Model, r.ChunkSize, r.Ranks, r.DeviceMemory, e), _ =>
            r.ChunkSize is long size ? ChunkLayout.Pack(specs, size, r.Ranks) : ChunkSizeSearch.ForDevice(specs, r.DeviceMemory, e, r.Ranks));
        long perRankChunks = layout.ChunkCount / r.Ranks;
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

        // The largest working set: the chunks holding the parameters of one module (with N ranks, every such
        // chunk's whole communication group is gathered on the device).
        long workingSet = 0;
        string workingModule = "";
        foreach (var m in GptParameterSpecs.Modules(r.Model))
        {
            int groups = m.Parameters.Select(n => layout[n].Chunk / r.Ranks).Distinct().Count();
            long bytes = groups * r.Ranks * paramChunk;
            if (bytes > workingSet) (workingSet, workingModule) = (bytes, m.Name);
        }

        var act = Activations(r.Model, r.Precision, r.MicroBatch, r.Sequence, r.Checkpointing, chunked: true);
        long model = items.Sum(i => i.Bytes);
        long paramBytes = items[0].Bytes;
        // Pinned parameters stay on the device; with N ranks a remote group is gathered beside them while in use.
        long deviceChunks = pinned ? paramBytes + (r.Ranks > 1 ? (r.Ranks - 1) * paramChunk : 0) : workingSet;
        var tiers = new List<TierDemand>
        {
            new("device", deviceChunks + act.Peak, r.DeviceMemory,
                $"{Bytes.Format(deviceChunks)} of parameter chunks ({(pinned ? "all of them, pinned" : $"the working set of {workingModule}")}) + {Bytes.Format(act.Peak)} activations"),
            // The engine builds every chunk list in host memory first (parameter chunks move to the device after),
            // so the host must hold all the chunks of this rank.
            new("host", model, r.HostMemory, $"every chunk list of this rank: {perRankChunks} chunks x {layout.ChunkSize:N0} elements in {items.Count} lists"),
        };
        return new MemoryEstimate(r, r.Model.ParameterCount, layout, items, act, workingSet, workingModule, tiers);
    }

    /// <summary>
    /// Peak bytes of non-model data in one training forward+backward of <see cref="GptModel"/>. Gradients of the
    /// parameters that live in allocated <c>.grad</c> tensors or chunks are model data and not counted here.
    /// </summary>
    /// <remarks>
    /// Measured behaviour this follows (see <see cref="ActivationMeter"/>): the custom autograd functions of
    /// ParameterOps receive and return gradients as TorchSharp tensors, and those handles (and the handles to
    /// saved inputs) belong to the trainer's per-micro-step dispose scope, so they stay alive until backward has
    /// finished. Memory therefore grows through backward and peaks at its end (or at the loss, for large
    /// vocabularies), and activation checkpointing saves less than the textbook figure: each recomputed block's
    /// saved inputs are held again until the end.
    /// </remarks>
    /// <param name="chunked">The chunk engine disposes each weight gradient once copied into its chunk slot.</param>
    public static ActivationEstimate Activations(GptConfig c, Precision precision, long batch, long seq, bool checkpointing, bool chunked)
    {
        long e = ActivationBytes(precision);
        long t = batch * seq, h = c.Hidden, v = c.VocabSize, a = c.Heads, l = c.Layers;
        bool dropout = c.Dropout > 0;

        // Kept by one block for backward, per the ops in GptModel (elements x e): ln_1 input, ln_1 output
        // (c_attn's input), qkv (3h: q, k, v are views), attention output and its contiguous copy (c_proj's input),
        // the residual sum (ln_2's input), ln_2 output, c_fc output (gelu's input) and gelu output = 17·h per token,
        // plus the attention's fp32 log-sum-exp per head.
        long block = 17 * t * h * e + 4 * batch * a * seq;
        if (dropout)
        {
            // Two residual dropout masks (1 byte each); attention dropout leaves the fused kernel for the math path,
            // which keeps the scaled q and k, the softmax, its dropout mask and the dropped probabilities.
            block += 2 * t * h + 2 * t * h * e + batch * a * seq * seq * (2 * e + 1);
        }
        long blockInput = t * h * e;
        // Token ids (input, target, the embedding's copy), the embedding dropout mask, ln_f's input and output.
        long outside = 3 * t * 8 + (dropout ? t * h : 0) + 2 * t * h * e;
        long logits = t * v * e;
        long logSoftmax = t * v * 4; // cross-entropy runs in fp32: log_softmax keeps its output
        long forwardSaved = outside + logits + (checkpointing ? l * blockInput : l * block);
        // The LM head's fresh weight gradient (the tied embedding's size) exists while the chunk engine copies it into
        // the weight's slot; later contributions add into that slot, so nothing of that size is held across backward.
        long lmHeadGradient = chunked ? v * h * e : 0;

        // Loss backward: nll's gradient, log_softmax's input gradient and part of one more logits-sized fp32 buffer (measured)
        // beside everything forward kept, and the LM head's fresh weight gradient.
        long atLoss = forwardSaved + logSoftmax + 5 * t * v * 4 / 2 + (precision == Precision.Bf16 ? t * v * e : 0) + lmHeadGradient;

        // Through the blocks (measured): what forward kept, the gradients in flight (about 11 hidden-sized tensors
        // per token), the largest fresh weight gradient (mlp, 4·h² elements) and, with checkpointing, the block being
        // recomputed (its saved activations and the temporaries of its re-run forward: about 1.25 blocks).
        long atBlocks = forwardSaved + 11 * t * h * e + 4 * h * h * e + (checkpointing ? 5 * block / 4 : 0);

        return atLoss >= atBlocks
            ? new ActivationEstimate(forwardSaved, atLoss, "the loss's backward (logits' gradients)")
            : new ActivationEstimate(forwardSaved, atBlocks, checkpointing ? "backward through a recomputed block" : "backward through the blocks");
    }

    // ---- Knobs ---------------------------------------------------------------------------------------------

    private static IReadOnlyList<FitKnob> FindKnobs(MemoryEstimate failed)
    {
        var r = failed.Request;
        var knobs = new List<FitKnob>();
        MemoryEstimate Try(EstimateRequest changed) => Estimate(changed, suggestKnobs: false);

        if (!r.Checkpointing && Try(r with { Checkpointing = true }) is { Fits: true } ckpt)
            knobs.Add(new("turn on activation checkpointing", "--checkpointing", ckpt));

        // The largest micro-batch that fits, with more accumulation steps keeping the tokens per step.
        for (int b = r.MicroBatch / 2; b >= 1; b /= 2)
        {
            int accum = r.GradientAccumulation * (int)Math.Ceiling((double)r.MicroBatch / b);
            if (Try(r with { MicroBatch = b, GradientAccumulation = accum }) is { Fits: true } smaller)
            {
                knobs.Add(new($"micro-batch {b} with {accum} accumulation steps (same tokens per step)", $"--batch {b} --accum {accum}", smaller));
                break;
            }
            if (b == 1) break;
        }

        for (int s = r.Sequence / 2; s >= 16; s /= 2)
            if (Try(r with { Sequence = s }) is { Fits: true } shorter)
            {
                knobs.Add(new($"sequence length {s}", $"--seq {s}", shorter));
                break;
            }

        if (r.Chunked)
            for (int n = Math.Max(2, r.Ranks * 2); n <= 64; n *= 2)
                if (Try(r with { Ranks = n }) is { Fits: true } wider)
                {
                    knobs.Add(new($"{n} data-parallel ranks (each holds 1/{n} of the chunks)", $"--ranks {n}", wider));
                    break;
                }

        // More memory: exactly what each short tier lacks, checked together.
        var device = failed.Tiers.FirstOrDefault(t => t.Tier == "device" && t.Short > 0);
        var host = failed.Tiers.FirstOrDefault(t => t.Tier == "host" && t.Short > 0);
        if (host is not null)
        {
            var more = r with { HostMemory = RoundUpMiB(host.Needed) };
            if (Try(more) is { Fits: true } hostFit)
                knobs.Add(new($"host memory {Bytes.Format(more.HostMemory)} (+{Bytes.Format(host.Short)})", $"--host-memory {more.HostMemory / (1 << 20)}MiB", hostFit));
        }
        if (device is not null)
        {
            var more = GrowUntilFits(r, device.Needed, null, Try);
            if (more is not null)
                knobs.Add(new($"device memory {Bytes.Format(more.Request.DeviceMemory!.Value)} (+{Bytes.Format(more.Request.DeviceMemory!.Value - (r.DeviceMemory ?? 0))})",
                    $"--device-memory {more.Request.DeviceMemory.Value / (1 << 20)}MiB", more));
        }
        if (device is not null && host is not null)
        {
            var both = GrowUntilFits(r, device.Needed, host.Needed, Try);
            if (both is not null)
                knobs.Add(new($"device memory {Bytes.Format(both.Request.DeviceMemory!.Value)} and host memory {Bytes.Format(both.Request.HostMemory)} " +
                              $"(+{Bytes.Format(both.Request.HostMemory - r.HostMemory)})",
                    $"--device-memory {both.Request.DeviceMemory!.Value / (1 << 20)}MiB --host-memory {both.Request.HostMemory / (1 << 20)}MiB", both));
        }
        if (!r.Chunked)
        {
            // The plain engine keeps all model data on the device; the chunk engine needs only a working set there.
            var chunked = r with { Engine = "chunked", Placement = ChunkPlacement.Dynamic };
            if (Try(chunked) is { Fits: true } offload)
                knobs.Add(new("the chunk engine (model data on the host, parameters moved per module)", "--engine chunked", offload));
        }
        else if (r.Placement == ChunkPlacement.Static && Try(r with { Placement = ChunkPlacement.Dynamic }) is { Fits: true } dynamic)
            knobs.Add(new("dynamic placement (parameter chunks moved per module)", "--placement dynamic", dynamic));
        return knobs;
    }

    /// <summary>
    /// Raises the budgets to what the estimate says is needed, a few times over: the automatic chunk size grows with
    /// the device budget (<see cref="ChunkSizeSearch.ForDevice"/>), so a bigger budget can need a little more again.
    /// </summary>
    private static MemoryEstimate? GrowUntilFits(EstimateRequest r, long deviceNeeded, long? hostNeeded, Func<EstimateRequest, MemoryEstimate> estimate)
    {
        var request = r with { DeviceMemory = RoundUpMiB(deviceNeeded), HostMemory = hostNeeded is long h ? RoundUpMiB(h) : r.HostMemory };
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var e = estimate(request);
            if (e.Fits) return e;
            var d = e.Tiers.FirstOrDefault(t => t.Tier == "device" && t.Short > 0);
            var hst = e.Tiers.FirstOrDefault(t => t.Tier == "host" && t.Short > 0);
            if (d is null && hst is null) return null;
            if (hst is not null && hostNeeded is null) return null; // this knob only changes the device budget
            request = request with
            {
                DeviceMemory = d is null ? request.DeviceMemory : RoundUpMiB(d.Needed),
                HostMemory = hst is null ? request.HostMemory : RoundUpMiB(hst.Needed),
            };
        }
        return null;
    }

    private static long RoundUpMiB(long bytes) => (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20);
}
