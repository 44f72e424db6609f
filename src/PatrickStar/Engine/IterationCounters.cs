using PatrickStar.Training;

namespace PatrickStar.Engine;

/// <summary>What the current training iteration has done so far; the parts of the engine add to it, the statistics report it.</summary>
internal sealed class IterationCounters
{
    public long BytesToDevice, BytesToHost, Moves, Evictions, PeakDevice, PeakDeviceModel, PeakDeviceNonModel, PeakNonModel, CommunicatedBytes, Collectives;
    public double CommunicationSeconds;
    public long PrefetchBytes, PrefetchHits;
    public double PrefetchWaitSeconds;
    /// <summary>Gradient bytes copied from device memory to the host for optimizer state on the host (0 with the state on the device).</summary>
    public long OptimizerGradientBytesToHost;
    /// <summary>The collectives' host staging (a device tensor through host memory for MPI) and their time in the communicator.</summary>
    public CollectiveStaging Staging { get; } = new();

    public void Reset()
    {
        OptimizerGradientBytesToHost = 0;
        Staging.Reset();
        BytesToDevice = BytesToHost = Moves = Evictions = PeakDevice = PeakDeviceModel = PeakDeviceNonModel = PeakNonModel = CommunicatedBytes = Collectives = 0;
        CommunicationSeconds = 0;
        PrefetchBytes = PrefetchHits = 0;
        PrefetchWaitSeconds = 0;
    }

    /// <summary>The iteration's figures, with the engine's own readings; <paramref name="heldChunkBytes"/> is null when training alone (no collectives).</summary>
    public ChunkIterationStatistics Snapshot(long deviceNeed, int deviceChunksResident, int optimizerChunksOnDevice, long? heldChunkBytes) =>
        new(BytesToDevice, BytesToHost, Moves, Evictions, PeakDevice, PeakDeviceModel, PeakDeviceNonModel, deviceNeed, deviceChunksResident, optimizerChunksOnDevice,
            heldChunkBytes is long held ? new CommunicationStatistics(CommunicatedBytes, Collectives, CommunicationSeconds, held)
            {
                StagedToHostBytes = Staging.ToHostBytes, StagedToDeviceBytes = Staging.ToDeviceBytes,
                StagingSeconds = Staging.StagingSeconds, CommunicatorSeconds = Staging.CommunicatorSeconds,
            } : null)
        {
            PrefetchBytes = PrefetchBytes, PrefetchHits = PrefetchHits, PrefetchWaitSeconds = PrefetchWaitSeconds,
            OptimizerGradientBytesToHost = OptimizerGradientBytesToHost,
        };
}
