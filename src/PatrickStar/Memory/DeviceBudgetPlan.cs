namespace PatrickStar.Memory;

/// <summary>
/// How many chunk bytes the compute device may hold at each moment after warm-up: the device
/// budget minus the non-model memory the trace says the moment (and the next one) needs, minus
/// the communication buffers. Never negative.
/// </summary>
/// <param name="deviceBudget">Bytes of device memory this process may use in total.</param>
/// <param name="trace">The completed warm-up trace.</param>
/// <param name="communicationBytes">Bytes reserved for collective-communication buffers.</param>
public sealed class DeviceBudgetPlan(long deviceBudget, MomentTrace trace, long communicationBytes = 0)
{
    private readonly long _deviceBudget = deviceBudget >= 0
        ? deviceBudget
        : throw new ArgumentOutOfRangeException(nameof(deviceBudget), deviceBudget, "The device budget cannot be negative.");

    private readonly MomentTrace _trace = trace ?? throw new ArgumentNullException(nameof(trace));

    private readonly long _communicationBytes = communicationBytes >= 0
        ? communicationBytes
        : throw new ArgumentOutOfRangeException(nameof(communicationBytes), communicationBytes, "Communication bytes cannot be negative.");

    public long DeviceBudget => _deviceBudget;

    public long CommunicationBytes => _communicationBytes;

    /// <summary>Chunk bytes allowed on the device at <paramref name="moment"/>.</summary>
    public long ChunkBytesAllowedAt(int moment) =>
        Math.Max(0, _deviceBudget - _trace.PeakNonModelAround(moment) - _communicationBytes);

    /// <summary>
    /// The tightest moment's allowance: chunk bytes that can stay on the device through the whole
    /// iteration without ever being evicted for non-model memory.
    /// </summary>
    public long MinimumChunkBytesAllowed =>
        _trace.MomentCount == 0
            ? Math.Max(0, _deviceBudget - _communicationBytes) // nothing traced, nothing to reserve for
            : Enumerable.Range(0, _trace.MomentCount).Min(ChunkBytesAllowedAt);
}
