using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Memory;

namespace PatrickStar.Engine;

/// <summary>
/// How many chunk bytes the device may hold at each moment, and which chunk leaves when it is full. Static placement
/// keeps every parameter chunk on the device; dynamic placement allows a fixed fraction of the budget during the
/// warm-up, then, per moment, what the traced non-model data leaves, and evicts by OPT (the chunk needed farthest in
/// the future leaves first). A tier below the host would add its own allowance and victim choice here.
/// </summary>
internal sealed class PlacementPolicy(ChunkEngineOptions options)
{
    private DeviceBudgetPlan? plan;

    public bool IsStatic => options.Policy == ChunkPlacement.Static;

    /// <summary>True once the warm-up's trace has been turned into per-moment allowances.</summary>
    public bool Planned => plan is not null;

    /// <summary>Turns the warm-up trace into per-moment allowances (minus what the collectives borrow).</summary>
    public void Plan(MomentTrace trace, long communicationBufferBytes) => plan = new DeviceBudgetPlan(options.DeviceMemory, trace, communicationBufferBytes);

    /// <summary>Chunk bytes the device may hold as moment <paramref name="moment"/> begins, with <paramref name="nonModel"/> bytes of non-model data measured.</summary>
    public long AllowedAtMomentStart(long nonModel, bool warmingUp, int moment)
    {
        // Evict ahead of a moment whose traced non-model peak would not fit (dynamic placement), and in any
        // case keep chunks + the non-model data measured now within the budget.
        long allowed = options.DeviceMemory - nonModel;
        if (!warmingUp && options.Policy == ChunkPlacement.Dynamic) allowed = Math.Min(allowed, plan!.ChunkBytesAllowedAt(moment));
        return allowed;
    }

    /// <summary>Bytes of parameter chunks allowed on the device now.</summary>
    public long AllowedChunkBytes(bool training, int moment)
    {
        if (options.Policy == ChunkPlacement.Static) return options.DeviceMemory;
        if (plan is null) return (long)(options.DeviceMemory * options.WarmupDeviceFraction);
        if (!training) return plan.MinimumChunkBytesAllowed; // evaluation: no moments, so the tightest traced allowance
        return plan.ChunkBytesAllowedAt(Math.Max(0, moment));
    }

    /// <summary>The allowance the profile shows at a moment; null under static placement.</summary>
    public long? ProfiledAllowance(int moment) => options.Policy == ChunkPlacement.Static ? null
        : plan is null ? (long)(options.DeviceMemory * options.WarmupDeviceFraction) : plan.ChunkBytesAllowedAt(Math.Max(0, moment));

    /// <summary>The chunk to evict among <paramref name="candidates"/>: OPT by the trace when it applies, else the least recently used.</summary>
    public Chunk ChooseVictim(List<Chunk> candidates, MomentTrace trace, int moment, bool useTrace)
    {
        if (useTrace && plan is not null)
        {
            int id = OptEvictionPolicy.ChooseVictim(trace, moment, candidates.Select(c => c.Index))!.Value;
            return candidates.First(c => c.Index == id);
        }
        return candidates.OrderBy(c => c.LastUse).First(); // warm-up has no trace yet: least recently used
    }

    /// <summary>
    /// Hybrid Adam's margin: the device room that parameter chunks never need, i.e. the tightest traced allowance for
    /// chunks minus every parameter chunk, times the safety ratio. Null when hybrid Adam is off or nothing is traced yet.
    /// </summary>
    public long? OptimizerMargin(MomentTrace trace, long parameterChunkBytes)
    {
        if (!options.HybridAdam || plan is null) return null;
        long allowance = options.Policy == ChunkPlacement.Static
            ? options.DeviceMemory - trace.PeakNonModel
            : plan.MinimumChunkBytesAllowed;
        return (long)((allowance - parameterChunkBytes) * options.MarginUseRatio);
    }
}
