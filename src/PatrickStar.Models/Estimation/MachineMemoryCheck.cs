using PatrickStar.Profiling;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// Refuses, before anything is built, a run the machine cannot hold now. What the run will use is, per tier, what the
/// estimate says it needs but at most its budget (the tiers never hold more); the device tier counts only on a CPU
/// device, whose memory is the host's. To that come 10% for the allocator and the runtime's measured resident baseline
/// (.NET and libtorch loaded). It is compared with what this process can still get: MemAvailable, and the cgroup's room
/// where the process has a limit, each plus what the process already holds.
/// </summary>
public static class MachineMemoryCheck
{
    /// <summary>The allocator's allowance over the tiers' bytes: the bound peak RSS is tested against.</summary>
    public const double AllocatorAllowance = 0.10;

    /// <summary>The one-line reason the run cannot fit, or null when it can (or the machine's memory is unknown).</summary>
    public static string? Shortfall(MemoryEstimate estimate, bool cpuDevice, long runtimeResident, long residentNow, long? memAvailable, long? cgroupRoom)
    {
        long? room = Min(memAvailable, cgroupRoom);
        if (room is not long free) return null;
        long available = free + residentNow;
        long TierUse(string name) => estimate.Tiers.Where(t => t.Tier == name).Sum(t => Math.Min(t.Needed, t.Available ?? t.Needed));
        long device = cpuDevice ? TierUse("device") : 0;
        long host = TierUse("host") + TierUse(DiskEstimator.StagingTier);
        long need = (long)((device + host) * (1 + AllocatorAllowance)) + runtimeResident;
        if (need <= available) return null;
        long hostFits = Math.Max(0, (long)((available - runtimeResident) / (1 + AllocatorAllowance)) - device);
        string source = cgroupRoom is long c && (memAvailable is not long m || c < m) ? "the cgroup's memory limit" : "MemAvailable";
        return $"this run needs about {Bytes.Format(need)} of memory ({need:N0} bytes: {Bytes.Format(host)} host tier" +
               (cpuDevice ? $" + {Bytes.Format(device)} device tier (the CPU's memory)" : "") +
               $" + {AllocatorAllowance * 100:0}% allocator allowance + {Bytes.Format(runtimeResident)} runtime) but this machine can give it " +
               $"{Bytes.Format(available)} ({available:N0} bytes, {source}); short by {Bytes.Format(need - available)}. " +
               $"Lower --host-memory to {hostFits >> 20}MiB and put the rest on disk (--disk-dir DIR), free memory, or train a smaller model.";
    }

    private static long? Min(long? a, long? b) => a is long x ? (b is long y ? Math.Min(x, y) : x) : b;
}
