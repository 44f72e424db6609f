using PatrickStar.Tiers;

namespace PatrickStar.Engine;

/// <summary>
/// The disk tier's staging buffers (<see cref="DiskChunkStore"/>): host memory outside the host budget, one fp32 chunk
/// each, allocated whenever disk_dir is set. Public so that the estimator counts what the engine allocates.
/// </summary>
public static class DiskStaging
{
    /// <summary>Buffers for one-chunk transfers beyond the read-ahead ones: a load and a spill at once.</summary>
    public const int TransferBuffers = 2;

    /// <summary>Buffers of the optimizer's streamed slices (<see cref="Tiers.StreamedGroups.OptimizerBuffers"/>).</summary>
    public const int StreamingBuffers = Tiers.StreamedGroups.OptimizerBuffers;

    /// <summary>The engine's default of chunks read ahead from disk (<see cref="ChunkEngineOptions.DiskReadAhead"/>).</summary>
    public const int DefaultReadAhead = 2;

    /// <summary>
    /// Bytes of all staging buffers for chunks of <paramref name="chunkElements"/>: whole fp32 chunk slots for transfers and
    /// read-ahead, and the optimizer's slice pool, each buffer at most <paramref name="sliceBytes"/> (slots rounded up for O_DIRECT).
    /// </summary>
    public static long Bytes(long chunkElements, int readAhead = DefaultReadAhead, long sliceBytes = Tiers.StreamedGroups.DefaultSliceBytes)
    {
        long slot = StagingBuffer.RoundUp(chunkElements * 4);
        return (TransferBuffers + readAhead) * slot + StreamingBuffers * Math.Min(slot, sliceBytes);
    }
}
