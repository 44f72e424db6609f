namespace PatrickStar.Engine;
// TEMP: RSS marks for measuring the streamed build; removed before the end.
public static class TempRss
{
    public static void Mark(string what)
    {
        if (Environment.GetEnvironmentVariable("PSTAR_TEMP_RSS") is null) return;
        var s = PatrickStar.Profiling.MemoryMeter.Snapshot();
        Console.Error.WriteLine($"RSS {what}: {s.Resident >> 20} MiB (hwm {s.PeakResident >> 20} MiB)");
    }
}
