using System.Globalization;
using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;

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
    long? ChunkSize = null,
    DataParallelMode DataParallel = DataParallelMode.Gather,
    PatrickStar.Models.Llama.LlamaConfig? Llama = null,
    bool HostLoss = false)
{
    public bool Chunked => Engine == "chunked";

    /// <summary>The model's parameters: the LLaMA's when <see cref="Llama"/> is set (<see cref="Model"/> then holds its shared sizes).</summary>
    public long ParameterCount => Llama?.ParameterCount ?? Model.ParameterCount;
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

/// <summary>
/// Non-model bytes over one stretch of a training iteration (between two of the engine's moments) and the module whose
/// hook ends it: the engine's warm-up check compares the stretch's sampled peak plus that module's working set with the budget.
/// </summary>
/// <param name="NextModule">Null: any module (counted with the largest working set).</param>
public sealed record NonModelPhase(string Name, long Bytes, string? NextModule);

/// <summary>A change (or several together) that makes the run fit, found by re-running the estimate with it applied.</summary>
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
        if (Knobs.Count == 0) lines.Add("  No change tried (bf16-fp32, checkpointing, micro-batch, sequence, ranks, memory, and combinations) makes it fit: choose a smaller model.");
        else
        {
            lines.Add("  Any one of these makes it fit:");
            foreach (var k in Knobs) lines.Add($"    {k.Change} ({k.Flags})");
        }
        return string.Join(Environment.NewLine, lines);
    }
}
