namespace PatrickStar.Profiling;

/// <summary>The memory limit of the control group this process runs in (containers, systemd slices), where there is one.</summary>
public static class CgroupMemory
{
    /// <summary>Bytes the cgroup still lets this process's group use (limit minus current use), or null without a limit.</summary>
    public static long? Room()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            // cgroup v2: "0::/path" names the group; v1 keeps the memory controller apart.
            string? v2 = File.Exists("/proc/self/cgroup")
                ? File.ReadLines("/proc/self/cgroup").FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal))?[3..]
                : null;
            if (v2 is not null && Read(Path.Combine("/sys/fs/cgroup", v2.TrimStart('/'), "memory.max")) is long max)
                return max - (Read(Path.Combine("/sys/fs/cgroup", v2.TrimStart('/'), "memory.current")) ?? 0);
            if (Read("/sys/fs/cgroup/memory.max") is long rootMax)
                return rootMax - (Read("/sys/fs/cgroup/memory.current") ?? 0);
            if (Read("/sys/fs/cgroup/memory/memory.limit_in_bytes") is long v1 && v1 < long.MaxValue / 2)
                return v1 - (Read("/sys/fs/cgroup/memory/memory.usage_in_bytes") ?? 0);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }

    /// <summary>A number from a cgroup file; null when missing or "max" (no limit).</summary>
    private static long? Read(string path) =>
        File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), out long value) ? value : null;
}
