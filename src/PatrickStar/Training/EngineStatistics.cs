namespace PatrickStar.Training;

/// <summary>What an engine reports after each step; the chunk figures come only from the chunk engine.</summary>
/// <param name="GradNorm">Global L2 norm of the last step's gradients (null before the first step).</param>
/// <param name="LossScale">The loss scale after the last step (null before the first step).</param>
/// <param name="Disk">The disk tier's traffic since the engine started (cumulative); null without a disk tier.</param>
public sealed record EngineStatistics(double? GradNorm = null, double? LossScale = null, ChunkStatistics? Chunks = null,
    Tiers.IoStatistics? Disk = null)
{
    public static readonly EngineStatistics None = new();

    /// <summary>The figures under their metrics-file names (snake_case), in a fixed order: the metrics file and the bench report write them.</summary>
    public IEnumerable<KeyValuePair<string, double>> Named()
    {
        if (Chunks is not null)
            foreach (var figure in Chunks.Named()) yield return figure;
        if (GradNorm is double norm) yield return new("grad_norm", norm);
        if (LossScale is double scale) yield return new("loss_scale", scale);
        if (Disk is { } disk)
        {
            yield return new("disk_read_bytes", disk.BytesRead);
            yield return new("disk_write_bytes", disk.BytesWritten);
            yield return new("disk_io_seconds", disk.IoSeconds);
            yield return new("disk_wait_seconds", disk.ConsumerWaitSeconds);
        }
    }
}

/// <summary>The chunk engine's layout, and what its last training iteration did.</summary>
/// <param name="Chunks">Chunks per list, padding for data parallelism included.</param>
/// <param name="ChunkElements">Elements per chunk.</param>
/// <param name="ChunkUtilisation">Fraction of the chunks' elements that hold parameters.</param>
/// <param name="LastIteration">Null until an iteration has ended.</param>
public sealed record ChunkStatistics(int Chunks, long ChunkElements, double ChunkUtilisation, ChunkIterationStatistics? LastIteration = null)
{
    internal IEnumerable<KeyValuePair<string, double>> Named()
    {
        yield return new("chunks", Chunks);
        yield return new("chunk_elements", ChunkElements);
        yield return new("chunk_utilisation", ChunkUtilisation);
        if (LastIteration is not { } i) yield break;
        yield return new("bytes_to_device", i.BytesToDevice);
        yield return new("bytes_to_host", i.BytesToHost);
        yield return new("chunk_moves", i.ChunkMoves);
        yield return new("evictions", i.Evictions);
        yield return new("peak_device_bytes", i.PeakDeviceBytes);
        yield return new("peak_device_model_bytes", i.PeakDeviceModelBytes);
        yield return new("peak_device_non_model_bytes", i.PeakDeviceNonModelBytes);
        yield return new("device_need_bytes", i.DeviceNeedBytes);
        yield return new("device_chunks_resident", i.DeviceChunksResident);
        yield return new("optimizer_chunks_on_device", i.OptimizerChunksOnDevice);
        yield return new("host_bytes", i.HostBytes);
        yield return new("peak_host_bytes", i.PeakHostBytes);
        if (i.Communication is not { } c) yield break;
        yield return new("comm_bytes", c.Bytes);
        yield return new("comm_calls", c.Calls);
        yield return new("comm_seconds", c.Seconds);
        yield return new("held_chunk_bytes", c.HeldChunkBytes);
    }
}

/// <summary>One training iteration of the chunk engine: traffic between the tiers and the device's peak.</summary>
/// <param name="PeakDeviceBytes">Largest chunk + non-model bytes on the device at any moment of the iteration.</param>
/// <param name="PeakDeviceModelBytes">The chunk part of that peak.</param>
/// <param name="PeakDeviceNonModelBytes">The non-model part of that peak.</param>
/// <param name="DeviceNeedBytes">The smallest device budget the engine's checks so far would have accepted.</param>
/// <param name="DeviceChunksResident">Parameter chunks on the device after the iteration.</param>
/// <param name="OptimizerChunksOnDevice">Master chunks on the device (hybrid Adam).</param>
/// <param name="Communication">Null when training alone.</param>
public sealed record ChunkIterationStatistics(
    long BytesToDevice,
    long BytesToHost,
    long ChunkMoves,
    long Evictions,
    long PeakDeviceBytes,
    long PeakDeviceModelBytes,
    long PeakDeviceNonModelBytes,
    long DeviceNeedBytes,
    int DeviceChunksResident,
    int OptimizerChunksOnDevice,
    CommunicationStatistics? Communication = null)
{
    /// <summary>Chunk bytes in the host tier when the iteration ended.</summary>
    public long HostBytes { get; init; }

    /// <summary>The host tier's peak chunk bytes since the engine started.</summary>
    public long PeakHostBytes { get; init; }
}

/// <summary>One iteration's collectives on this rank.</summary>
/// <param name="Bytes">Bytes of the buffers the collectives carried.</param>
/// <param name="Calls">Collectives called.</param>
/// <param name="Seconds">Wall time spent in them.</param>
/// <param name="HeldChunkBytes">Chunk payload bytes this rank holds after the update (remote copies released).</param>
public sealed record CommunicationStatistics(long Bytes, long Calls, double Seconds, long HeldChunkBytes);
