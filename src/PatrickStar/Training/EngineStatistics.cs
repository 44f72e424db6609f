using PatrickStar.Tiers;

namespace PatrickStar.Training;

/// <summary>What an engine reports after each step; the chunk figures come only from the chunk engine.</summary>
/// <param name="GradNorm">Global L2 norm of the last step's gradients (null before the first step).</param>
/// <param name="LossScale">The loss scale after the last step (null before the first step).</param>
/// <param name="Disk">The last iteration's disk traffic; null without a disk tier (fill with <see cref="DiskIterationMeter"/>).</param>
public sealed record EngineStatistics(double? GradNorm = null, double? LossScale = null, ChunkStatistics? Chunks = null, DiskStatistics? Disk = null)
{
    public static readonly EngineStatistics None = new();

    /// <summary>The figures under their metrics-file names (snake_case), in a fixed order: the metrics file and the bench report write them.</summary>
    public IEnumerable<KeyValuePair<string, double>> Named()
    {
        if (Chunks is not null)
            foreach (var figure in Chunks.Named()) yield return figure;
        if (Disk is not null)
            foreach (var figure in Disk.Named()) yield return figure;
        if (GradNorm is double norm) yield return new("grad_norm", norm);
        if (LossScale is double scale) yield return new("loss_scale", scale);
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
        yield return new("prefetch_bytes", i.PrefetchBytes);
        yield return new("prefetch_hits", i.PrefetchHits);
        yield return new("prefetch_wait_seconds", i.PrefetchWaitSeconds);
        yield return new("optimizer_grad_bytes_to_host", i.OptimizerGradientBytesToHost);
        if (i.Communication is not { } c) yield break;
        yield return new("comm_bytes", c.Bytes);
        yield return new("comm_calls", c.Calls);
        yield return new("comm_seconds", c.Seconds);
        yield return new("held_chunk_bytes", c.HeldChunkBytes);
        yield return new("comm_staged_to_host_bytes", c.StagedToHostBytes);
        yield return new("comm_staged_to_device_bytes", c.StagedToDeviceBytes);
        yield return new("comm_staging_seconds", c.StagingSeconds);
        yield return new("comm_mpi_seconds", c.CommunicatorSeconds);
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

    /// <summary>Bytes of parameter chunks whose host-to-device copy the read-ahead started.</summary>
    public long PrefetchBytes { get; init; }

    /// <summary>Fetches served by a read-ahead copy instead of a copy at the fetch.</summary>
    public long PrefetchHits { get; init; }

    /// <summary>Time fetches spent waiting for a read-ahead copy still in progress.</summary>
    public double PrefetchWaitSeconds { get; init; }

    /// <summary>Gradient bytes the optimizer copied from device memory to the host (state on the host); 0 when the state it updated was on the device.</summary>
    public long OptimizerGradientBytesToHost { get; init; }
}

/// <summary>One iteration's collectives on this rank.</summary>
/// <param name="Bytes">Bytes of the buffers the collectives carried.</param>
/// <param name="Calls">Collectives called.</param>
/// <param name="Seconds">Wall time spent in them.</param>
/// <param name="HeldChunkBytes">Chunk payload bytes this rank holds after the update (remote copies released).</param>
public sealed record CommunicationStatistics(long Bytes, long Calls, double Seconds, long HeldChunkBytes)
{
    /// <summary>Bytes of device tensors copied into host memory for the communicator (MPI moves host buffers); 0 on a CPU device.</summary>
    public long StagedToHostBytes { get; init; }

    /// <summary>Bytes copied back from host memory into device tensors after a collective; 0 on a CPU device.</summary>
    public long StagedToDeviceBytes { get; init; }

    /// <summary>Time spent in those copies.</summary>
    public double StagingSeconds { get; init; }

    /// <summary>Time spent in the communicator itself (MPI), staging excluded.</summary>
    public double CommunicatorSeconds { get; init; }

    public override string ToString() =>
        $"{Profiling.Bytes.Format(Bytes)} in {Calls:N0} collectives, {Seconds:0.000} s: {CommunicatorSeconds:0.000} s in the communicator, " +
        $"{StagingSeconds:0.000} s staging ({Profiling.Bytes.Format(StagedToHostBytes)} device->host, {Profiling.Bytes.Format(StagedToDeviceBytes)} host->device)";
}
