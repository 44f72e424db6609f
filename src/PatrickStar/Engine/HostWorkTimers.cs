using System.Diagnostics;

namespace PatrickStar.Engine;

// TEMPORARY (measurement of disk-tier host work; not to be committed).
internal static class HostWorkTimers
{
    public static readonly bool Old = Environment.GetEnvironmentVariable("PSTAR_DISK_OLD") == "1";
    public static readonly bool On = Environment.GetEnvironmentVariable("PSTAR_HOSTWORK") == "1";
    private static readonly Dictionary<string, (long Ticks, long Count)> acc = new();

    public static long Now() => On ? Stopwatch.GetTimestamp() : 0;

    public static void Add(string name, long start)
    {
        if (!On) return;
        long t = Stopwatch.GetTimestamp() - start;
        acc.TryGetValue(name, out var v);
        acc[name] = (v.Ticks + t, v.Count + 1);
    }

    public static void AddSeconds(string name, double seconds)
    {
        if (!On) return;
        acc.TryGetValue(name, out var v);
        acc[name] = (v.Ticks + (long)(seconds * Stopwatch.Frequency), v.Count + 1);
    }

    private static Timing.ProcessCounters? last;

    public static void Dump(string extra)
    {
        if (!On) return;
        var now = Timing.ProcessCounters.Read();
        if (now is { } n && last is { } l) { var d = n - l; extra = $"cpu user {d.UserSeconds:0.00}s sys {d.SystemSeconds:0.00}s minflt {d.MinorFaults} " + extra; }
        last = now;
        Console.Error.WriteLine("hostwork: " + extra + " " + string.Join(", ", acc.OrderBy(k => k.Key).Select(k => $"{k.Key} {(double)k.Value.Ticks / Stopwatch.Frequency:0.000}s/{k.Value.Count}")));
        acc.Clear();
    }
}
