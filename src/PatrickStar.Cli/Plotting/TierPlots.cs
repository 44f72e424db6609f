using PatrickStar.Memory;
using PatrickStar.Profiling;
using ScottPlot;

namespace PatrickStar.Cli.Plotting;

/// <summary>tiers.png of `pstar plot`: the chunk bytes in each tier (device, host, disk) at each moment, with each tier's budget.</summary>
public static class TierPlots
{
    public const int Width = 1400, Height = 700;

    /// <summary>The step series the figure draws: per tier, (time ms, bytes) pairs, two per moment (a value holds until the next moment).</summary>
    public static Dictionary<Tier, List<(double TimeMs, long Bytes)>> Series(Profile profile, double endMs)
    {
        var points = TierOccupancy.PerMoment(profile);
        var series = new Dictionary<Tier, List<(double, long)>>();
        foreach (var tier in Enum.GetValues<Tier>())
        {
            // The disk tier appears only when the run had one: no flat zero line for every run without it.
            if (tier == Tier.Disk && profile.Run.DiskBudgetBytes is null && points.All(p => p.Bytes.Disk == 0)) continue;
            var list = new List<(double, long)>(points.Count * 2);
            for (int i = 0; i < points.Count; i++)
            {
                double next = i + 1 < points.Count ? points[i + 1].TimeMs : endMs;
                list.Add((points[i].TimeMs, points[i].Bytes[tier]));
                list.Add((next, points[i].Bytes[tier]));
            }
            series[tier] = list;
        }
        return series;
    }

    public static string Tiers(Profile profile, string path, IterationRange? iterations = null)
    {
        var plot = ProfilePlots.NewPlot();
        double endMs = ProfilePlots.EndMs(profile);
        var (fromMs, toMs) = ProfilePlots.Window(profile, iterations, endMs);
        var time = ProfilePlots.TimeUnit(toMs - fromMs);
        ProfilePlots.AddStageBands(plot, profile, time, endMs);

        var series = Series(profile, endMs);
        var budgets = new Dictionary<Tier, long?>
        {
            [Tier.Device] = profile.Run.DeviceBudgetBytes,
            [Tier.Host] = profile.Run.HostBudgetBytes,
            [Tier.Disk] = profile.Run.DiskBudgetBytes,
        };
        double max = 1;
        foreach (var (tier, list) in series)
        {
            foreach (var (t, b) in list) if (t >= fromMs && t <= toMs) max = Math.Max(max, b);
            if (budgets[tier] is long budget) max = Math.Max(max, budget);
        }
        var bytes = ProfilePlots.ByteUnit(max);
        foreach (var (tier, list) in series)
        {
            var color = Color(tier);
            if (list.Count > 0)
            {
                var line = plot.Add.ScatterLine(list.Select(p => p.TimeMs / time.Divisor).ToArray(), list.Select(p => p.Bytes / bytes.Divisor).ToArray(), color);
                line.LineWidth = 2;
                line.LegendText = $"{Name(tier)} chunks";
            }
            if (budgets[tier] is long budget and > 0)
            {
                var limit = plot.Add.HorizontalLine(budget / bytes.Divisor, 1.5f, color, LinePattern.Dashed);
                limit.LegendText = $"{Name(tier)} budget ({Bytes.Format(budget)})";
            }
        }
        if (profile.Moments.Count == 0) plot.Add.Annotation("No moments were recorded in this profile.");

        plot.Title($"Chunk bytes per tier ({profile.Run.Engine} engine{ProfilePlots.Describe(iterations)})\n{profile.Run.Model}");
        plot.XLabel($"time since recording started ({time.Unit})");
        plot.YLabel($"chunk bytes ({bytes.Unit})");
        plot.Axes.SetLimits(fromMs / time.Divisor, toMs / time.Divisor, 0, max * 1.08 / bytes.Divisor);
        plot.ShowLegend(Edge.Right);
        return ProfilePlots.Save(plot, path, Width, Height);
    }

    private static ScottPlot.Color Color(Tier tier) => tier switch
    {
        Tier.Device => ProfilePlots.DeviceColor,
        Tier.Host => ProfilePlots.HostColor,
        _ => ProfilePlots.DiskColor,
    };

    private static string Name(Tier tier) => tier.ToString().ToLowerInvariant();
}
