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

    /// <summary>Groups (master, momentum, variance and perhaps the parameters) the optimizer streams at once: read, update and write overlap.</summary>
    public const int StreamedGroups = 3;

    /// <summary>Chunk kinds that may live on disk, and so the members of a streamed group.</summary>
    public const int KindsOnDisk = 4;

    /// <summary>The engine's default of chunks read ahead from disk (<see cref="ChunkEngineOptions.DiskReadAhead"/>).</summary>
    public const int DefaultReadAhead = 2;

    public static int Buffers(int readAhead) => TransferBuffers + readAhead + StreamedGroups * KindsOnDisk;

    /// <summary>Bytes of all staging buffers for chunks of <paramref name="chunkElements"/> (each slot rounded up for O_DIRECT).</summary>
    public static long Bytes(long chunkElements, int readAhead = DefaultReadAhead) => Buffers(readAhead) * StagingBuffer.RoundUp(chunkElements * 4);
}
