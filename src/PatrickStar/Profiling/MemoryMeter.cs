using System.Runtime.InteropServices;

namespace PatrickStar.Profiling;

/// <summary>A reading of the process's memory, in bytes.</summary>
/// <param name="NativeInUse">Bytes handed out by the native allocator now (glibc mallinfo2: arena in use + mmapped).
/// libtorch allocates CPU tensors through it, so this tracks tensor memory closely.</param>
/// <param name="Resident">Resident set size (VmRSS).</param>
/// <param name="PeakResident">Peak resident set size since start (VmHWM).</param>
public readonly record struct MemorySnapshot(long NativeInUse, long Resident, long PeakResident);

/// <summary>Measures memory of this process and of the machine. Linux figures; elsewhere the GC's view.</summary>
public static class MemoryMeter
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Mallinfo2
    {
        public nuint arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern Mallinfo2 NativeMallinfo2();

    private static bool _mallinfoWorks = OperatingSystem.IsLinux();

    /// <summary>
    /// Resident bytes of the runtime itself (.NET and libtorch loaded, no model yet), read when libtorch was first
    /// loaded; null before that. What a run's resident memory is measured above.
    /// </summary>
    public static long? RuntimeBaselineResident => PatrickStar.Runtime.TorchRuntime.ResidentAfterLoad;

    /// <summary>Bytes the native allocator has handed out and not yet taken back.</summary>
    public static long NativeInUse()
    {
        if (_mallinfoWorks)
        {
            try
            {
                var m = NativeMallinfo2();
                return (long)m.uordblks + (long)m.hblkhd;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _mallinfoWorks = false; // not glibc (musl, old glibc): fall back to RSS
            }
        }
        return Environment.WorkingSet;
    }

    public static MemorySnapshot Snapshot()
    {
        long rss = 0, hwm = 0;
        if (OperatingSystem.IsLinux())
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:")) rss = ParseKb(line);
                else if (line.StartsWith("VmHWM:")) hwm = ParseKb(line);
            }
        }
        else
        {
            rss = Environment.WorkingSet;
            hwm = rss;
        }
        return new MemorySnapshot(NativeInUse(), rss, hwm);
    }

    /// <summary>Memory the machine can still give (MemAvailable), or null when unknown.</summary>
    public static long? AvailableHostMemory()
    {
        if (!OperatingSystem.IsLinux()) return null;
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemAvailable:")) return ParseKb(line);
        return null;
    }

    /// <summary>The machine's physical memory (MemTotal), or null when unknown.</summary>
    public static long? PhysicalMemory()
    {
        if (!OperatingSystem.IsLinux()) return null;
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemTotal:")) return ParseKb(line);
        return null;
    }

    /// <summary>Bytes from a /proc line such as "VmRSS:\t 1234 kB".</summary>
    public static long ParseKb(string line)
    {
        // "VmRSS:\t  123456 kB": the kernel pads with spaces after a tab, and drops them for large numbers.
        var parts = line.Split(new[] { ' ', '\t' }, StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }
}

/// <summary>Human-readable byte counts (binary units).</summary>
public static class Bytes
{
    public static string Format(double bytes)
    {
        string[] units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        int u = 0;
        double v = bytes;
        while (Math.Abs(v) >= 1024 && u < units.Length - 1) { v /= 1024; u++; }
        return u == 0 ? $"{v:0} {units[u]}" : $"{v:0.0} {units[u]}";
    }
}
