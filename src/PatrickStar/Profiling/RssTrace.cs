namespace PatrickStar.Profiling;

// TEMPORARY measurement aid (not to be committed).
public static class RssTrace
{
    private static readonly bool On = Environment.GetEnvironmentVariable("PSTAR_RSS_TRACE") == "1";
    public static void Mark(string phase)
    {
        if (!On) return;
        var s = MemoryMeter.Snapshot();
        Console.Error.WriteLine($"RSS {phase}: rss {s.Resident / 1048576} MiB, hwm {s.PeakResident / 1048576} MiB, native {s.NativeInUse / 1048576} MiB, gc {GC.GetTotalMemory(false) / 1048576} MiB");
    }
}
