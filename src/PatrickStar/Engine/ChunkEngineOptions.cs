using PatrickStar.Config;
using PatrickStar.Profiling;
using PatrickStar.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>The chunk engine's settings (config keys chunk_size, placement_policy, device_memory, host_memory, disk_dir, disk_memory, mem_tracer.*, prefetch).</summary>
public sealed record ChunkEngineOptions(
    long DeviceMemory,
    long HostMemory,
    long? ChunkSize = null,
    ChunkPlacement Policy = ChunkPlacement.Dynamic,
    double WarmupDeviceFraction = 0.2,
    bool HybridAdam = true,
    double MarginUseRatio = 0.8,
    bool TensorAdamOnDevice = false,
    bool Prefetch = true,
    string? DiskDir = null,
    long? DiskMemory = null)
{
    /// <summary>Parameter chunks read ahead from disk, the next ones the trace names (0: none).</summary>
    public int DiskReadAhead { get; init; } = DiskStaging.DefaultReadAhead;

    /// <summary>Config key disk_read_ahead: disk traffic overlaps compute (read ahead, write behind); false waits for every
    /// read and write where it is needed, to measure what the overlap gains.</summary>
    public bool DiskOverlap { get; init; } = true;

    /// <summary>Opens the disk tier's chunk files; null for the real ones (tests inject failing files).</summary>
    public Tiers.ChunkFileOpener? DiskFileOpener { get; init; }

    /// <summary>Copies chunks between a CPU device and the host (one memory) as between a GPU and the host; tests run the copy path so. Off: the tiers hand buffers over.</summary>
    public bool CopyWithinOneMemory { get; init; }
    /// <summary>Bytes of one buffer of the optimizer's streamed slices of disk-resident chunks (the pool is a few of them).</summary>
    public long DiskSliceBytes { get; init; } = Tiers.StreamedGroups.DefaultSliceBytes;

    /// <summary>Receives the disk tier's start-up lines (I/O mode, a dead run's files removed); null: standard error.</summary>
    public Action<string>? DiskLog { get; init; }

    /// <summary>The non-model tracer's allocator reading for the compute device; null: <see cref="NonModelMemory.For"/> (tests inject a CUDA reading over a fake).</summary>
    public Func<Device, INonModelMemoryReader>? NonModelReader { get; init; }

    /// <summary>The CUDA caching allocator's statistics; null: <see cref="CudaStatisticsSource.Default"/>.</summary>
    public Func<Runtime.Cuda.ICudaAllocatorStatistics?>? CudaStatistics { get; init; }

    /// <summary>The CUDA runtime for pinning host buffers; null: libcudart when it loads (<see cref="AsyncChunkCopy"/>'s).</summary>
    public Func<Runtime.Cuda.ICudaRuntime?>? CudaRuntime { get; init; }

    /// <summary>Receives one-line warnings (a CUDA path falling back); null: standard error.</summary>
    public Action<string>? Warning { get; init; }

    /// <summary>The tracer's reading for <paramref name="device"/>.</summary>
    internal INonModelMemoryReader NonModelReaderFor(Device device) =>
        NonModelReader?.Invoke(device) ?? NonModelMemory.For(device, CudaStatistics ?? CudaStatisticsSource.Default, Warning);

    /// <summary>
    /// Budgets from the config; on a CPU device the defaults split the machine's available memory 1:3; on a CUDA device
    /// the default device budget is what the device can still give (<see cref="CudaDeviceBudget"/>).
    /// </summary>
    /// <param name="cudaStatistics">The CUDA allocator statistics; null: <see cref="CudaStatisticsSource.Default"/>.</param>
    public static ChunkEngineOptions From(TrainingConfig config, Device device, Func<Runtime.Cuda.ICudaAllocatorStatistics?>? cudaStatistics = null)
    {
        var c = config.Chunks;
        long available = MemoryMeter.AvailableHostMemory() ?? 0;
        long deviceBudget = c.DeviceMemory ?? (device.type == DeviceType.CPU && available > 0
            ? available / 4
            : CudaDeviceBudget(device, cudaStatistics ?? CudaStatisticsSource.Default)
              ?? throw new ArgumentException($"device_memory must be set for {device}: its free memory cannot be read here (no CUDA allocator statistics); e.g. --device-memory 20GiB."));
        long hostBudget = c.HostMemory ?? Math.Max(0, available - (device.type == DeviceType.CPU ? deviceBudget : 0));
        return new ChunkEngineOptions(deviceBudget, hostBudget, c.ChunkSize, c.Placement, c.WarmupDeviceRatio, c.HybridAdam, c.MarginUseRatio, c.TensorAdamOnDevice,
            c.Prefetch, c.DiskDir, c.DiskMemory) { DiskFileOpener = c.DiskFileOpener, CopyWithinOneMemory = c.CopyWithinOneMemory, DiskOverlap = c.DiskReadAhead,
                DiskSliceBytes = c.DiskSliceBytes ?? Tiers.StreamedGroups.DefaultSliceBytes, NonModelReader = c.NonModelReader, CudaStatistics = cudaStatistics };
    }

    /// <summary>
    /// The automatic budget of a CUDA device: the driver's free bytes plus what the caching allocator holds reserved but
    /// unallocated (it hands that out first); what is already allocated is the tracer's baseline. Null when the statistics
    /// are not available or the device is not CUDA.
    /// </summary>
    public static long? CudaDeviceBudget(Device device, Func<Runtime.Cuda.ICudaAllocatorStatistics?> statistics)
    {
        if (device.type != DeviceType.CUDA || statistics() is not { Available: true } s) return null;
        int index = NonModelMemory.CudaIndex(device);
        long cached = Math.Max(0, s.ReservedBytes(index) - s.AllocatedBytes(index));
        return s.MemoryInfo(index).Free + cached;
    }

    /// <summary>Host bytes of model data per parameter: storage-precision copy (bf16 for both bf16 modes), fp32 master, momentum, variance (+ fp32 gradients when accumulating).</summary>
    public static int HostBytesPerParameter(TrainingConfig config) =>
        Runtime.TensorMemory.ElementSize(PlainEngine.ComputeType(config.Precision)) + 12 + (config.GradientAccumulationSteps > 1 ? 4 : 0);
}
