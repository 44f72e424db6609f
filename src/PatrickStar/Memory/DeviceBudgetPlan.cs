namespace PatrickStar.Memory;

/// <summary>How many bytes of chunks the device may hold at each moment, from the budget and the traced non-model peaks.</summary>
public sealed class DeviceBudgetPlan
{
    private readonly long deviceBudget;
    private readonly MomentTrace trace;
    private readonly long communicationBytes;

    public DeviceBudgetPlan(long deviceBudget, MomentTrace trace, long communicationBytes = 0)
    {
        this.deviceBudget = deviceBudget;
        this.trace = trace;
        this.communicationBytes = communicationBytes;
    }

    public long ChunkBytesAllowedAt(int moment) =>
        Math.Max(0, deviceBudget - trace.PeakNonModelAround(moment) - communicationBytes);

    public long MinimumChunkBytesAllowed =>
        trace.MomentCount == 0 ? Math.Max(0, deviceBudget - communicationBytes)
            : Enumerable.Range(0, trace.MomentCount).Min(ChunkBytesAllowedAt);
}
