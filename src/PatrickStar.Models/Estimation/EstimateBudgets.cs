using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Profiling;
using static TorchSharp.torch;

namespace PatrickStar.Models.Estimation;

/// <summary>The device and host budgets a training run takes: the ones `pstar train` and `pstar estimate` both use.</summary>
public static class EstimateBudgets
{
    /// <summary>
    /// The chunk engine's budgets (<see cref="ChunkEngineOptions.From"/>: on a CPU device the available memory split 1:3
    /// unless given); the plain engine's device budget is device_memory, or on a CPU device the available memory.
    /// On CUDA without a configured budget: the device's free memory when the allocator statistics are available, else the device is not checked.
    /// </summary>
    public static (long? Device, long Host) For(TrainingConfig config, Device device)
    {
        if (config.Engine == "chunked")
        {
            var options = ChunkEngineOptions.From(config, device);
            return (options.DeviceMemory, options.HostMemory);
        }
        long? deviceBudget = config.Chunks.DeviceMemory ?? (device.type == TorchSharp.DeviceType.CPU ? MemoryMeter.AvailableHostMemory()
            : ChunkEngineOptions.CudaDeviceBudget(device, CudaStatisticsSource.Default));
        return (deviceBudget, config.Chunks.HostMemory ?? 0);
    }

    /// <summary>
    /// Refuses budgets this machine cannot give at all: more than its physical memory (MemTotal). On a CPU device the
    /// device tier and the host tier share that memory, so their sum is compared. Null when the budgets are possible.
    /// </summary>
    public static string? BeyondPhysicalMemory(long? deviceBudget, long hostBudget, bool cpuDevice, bool chunked, long? physical)
    {
        if (physical is not long total) return null;
        long device = cpuDevice ? deviceBudget ?? 0 : 0;
        long host = chunked || !cpuDevice ? hostBudget : 0;
        if (device + host <= total) return null;
        string what = cpuDevice && chunked
            ? $"the device budget {Bytes.Format(device)} and the host budget {Bytes.Format(host)} together ({device + host:N0} bytes; a CPU device shares the host's memory) exceed"
            : cpuDevice ? $"the device budget {Bytes.Format(device)} ({device:N0} bytes; the device is the CPU) exceeds" : $"the host budget {Bytes.Format(host)} ({host:N0} bytes) exceeds";
        return $"{what} this machine's physical memory, {Bytes.Format(total)} ({total:N0} bytes, MemTotal), so no fit can be promised; " +
               $"give --device-memory/--host-memory that add up to at most {total >> 20}MiB.";
    }
}
