using PatrickStar.Chunks;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using ScottPlot;

namespace PatrickStar.Cli.Plotting;

/// <summary>Iterations First..Last (inclusive) of a profile, for `pstar plot --iterations`.</summary>
public readonly record struct IterationRange(int First, int Last)
{
    /// <summary>Parses "N" or "A:B"; throws ArgumentException with the accepted forms.</summary>
    public static IterationRange Parse(string text)
    {
        string[] parts = text.Split(':');
        if (parts.Length is 1 or 2 && int.TryParse(parts[0], out int a) && a >= 0)
        {
            int b = a;
            if (parts.Length == 1 || int.TryParse(parts[1], out b) && b >= a) return new IterationRange(a, b);
        }
        throw new ArgumentException($"--iterations '{text}' is not an iteration or a range: write N (one iteration) or A:B (A to B, A <= B).");
    }

    public override string ToString() => First == Last ? $"{First}" : $"{First}:{Last}";
}

/// <summary>The figures of `pstar plot`: memory per moment, chunk residency and the loss curve, as PNG files.</summary>
public static class ProfilePlots
{
    public const int MemoryWidth = 1400, MemoryHeight = 700;
    public const int ChunksWidth = 1400, ChunksHeight = 800;
    public const int LossWidth = 1100, LossHeight = 600;

    // Stage bands: light enough that the data drawn over them stays the main thing.
    // Stage hues are kept apart from the tier colours (red device, blue host) of the residency map.
    private static readonly Color ForwardBand = Color.FromHex("#59A14F").WithAlpha(0.16);
    private static readonly Color BackwardBand = Color.FromHex("#EDC948").WithAlpha(0.22);
    private static readonly Color OptimizerBand = Color.FromHex("#B07AA1").WithAlpha(0.20);

    internal static readonly Color DeviceColor = Color.FromHex("#E15759");
    internal static readonly Color HostColor = Color.FromHex("#4E79A7");
    internal static readonly Color DiskColor = Color.FromHex("#F28E2B");
    private static readonly Color ReleasedColor = Color.FromHex("#D3D3D3");

    private static readonly Dictionary<ChunkKind, Color> KindColors = new()
    {
        [ChunkKind.Param] = Color.FromHex("#4E79A7"),
        [ChunkKind.Gradient] = Color.FromHex("#76B7B2"),
        [ChunkKind.Master] = Color.FromHex("#9D7660"),
        [ChunkKind.Momentum] = Color.FromHex("#EDC948"),
        [ChunkKind.Variance] = Color.FromHex("#FF9DA7"),
    };
    private static readonly Color NonModelColor = Color.FromHex("#A9A9A9");

    private const double KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

    /// <summary>Device bytes at each moment: chunk bytes stacked by kind, non-model bytes on top, the budget as a line.</summary>
    public static string Memory(Profile profile, string path, IterationRange? iterations = null)
    {
        var plot = NewPlot();
        var moments = profile.Moments;
        double endMs = EndMs(profile);
        var (fromMs, toMs) = Window(profile, iterations, endMs);
        var time = TimeUnit(toMs - fromMs);

        AddStageBands(plot, profile, time, endMs);

        double budget = profile.Run.DeviceBudgetBytes;
        double maxBytes = budget;
        foreach (var m in moments)
            if (m.TimeMs >= fromMs && m.TimeMs <= toMs) maxBytes = Math.Max(maxBytes, m.DeviceTotalBytes);
        var bytes = ByteUnit(maxBytes);

        if (moments.Count > 0)
        {
            // Memory holds from one moment to the next: draw steps, not slopes between moments.
            var lower = new double[moments.Count];
            foreach (var kind in Enum.GetValues<ChunkKind>())
            {
                bool present = false;
                foreach (var m in moments) present |= m.DeviceChunkBytes[kind] != 0;
                if (!present) continue;
                AddStepBand(plot, profile, time, endMs, lower, i => moments[i].DeviceChunkBytes[kind], bytes.Divisor,
                    KindColors[kind], $"{Name(kind)} chunks");
            }
            AddStepBand(plot, profile, time, endMs, lower, i => moments[i].DeviceNonModelBytes, bytes.Divisor,
                NonModelColor.WithAlpha(0.85), "non-model (activations, temporaries)");

            var (xs, ys) = Steps(profile, time, endMs, i => moments[i].DeviceTotalBytes / bytes.Divisor);
            var total = plot.Add.ScatterLine(xs, ys, Color.FromHex("#222222"));
            total.LineWidth = 1.5f;
            total.LegendText = "device total";

            var known = new List<int>();
            for (int i = 0; i < moments.Count; i++) if (moments[i].DeviceChunkAllowanceBytes is not null) known.Add(i);
            if (known.Count > 0)
            {
                var ax = new List<double>();
                var ay = new List<double>();
                for (int k = 0; k < known.Count; k++)
                {
                    int i = known[k];
                    double next = i + 1 < moments.Count ? moments[i + 1].TimeMs : endMs;
                    double y = moments[i].DeviceChunkAllowanceBytes!.Value / bytes.Divisor;
                    ax.Add(moments[i].TimeMs / time.Divisor); ay.Add(y);
                    ax.Add(next / time.Divisor); ay.Add(y);
                }
                var allowance = plot.Add.ScatterLine(ax.ToArray(), ay.ToArray(), Color.FromHex("#7B3294"));
                allowance.LinePattern = LinePattern.Dotted;
                allowance.LineWidth = 2;
                allowance.LegendText = "chunk allowance (planner)";
            }
        }
        else
        {
            plot.Add.Annotation("No moments were recorded in this profile.");
        }

        if (budget > 0)
        {
            var line = plot.Add.HorizontalLine(budget / bytes.Divisor, 2, Color.FromHex("#D62728"), LinePattern.Dashed);
            line.LegendText = $"device budget ({Bytes.Format(budget)})";
        }

        // Two lines: the model description alone is often wider than the figure.
        plot.Title($"Device memory per moment ({profile.Run.Engine} engine{Describe(iterations)})\n{profile.Run.Model}");
        plot.XLabel($"time since recording started ({time.Unit})");
        plot.YLabel($"device memory ({bytes.Unit})");
        plot.Axes.SetLimits(fromMs / time.Divisor, toMs / time.Divisor, 0, Math.Max(maxBytes, 1) * 1.08 / bytes.Divisor);
        plot.ShowLegend(Edge.Right);
        return Save(plot, path, MemoryWidth, MemoryHeight);
    }

    /// <summary>Which tier each chunk's payload is in over time, one row per chunk, grouped by kind.</summary>
    public static string Chunks(Profile profile, string path, IterationRange? iterations = null)
    {
        var plot = NewPlot();
        double endMs = EndMs(profile);
        var (fromMs, toMs) = Window(profile, iterations, endMs);
        var time = TimeUnit(toMs - fromMs);

        // Rows: kinds in a fixed order, each with as many chunks as the run had (or events name).
        var counts = new Dictionary<ChunkKind, int>();
        foreach (var kind in Enum.GetValues<ChunkKind>())
            counts[kind] = profile.Run.BytesPerChunk[kind] > 0 ? profile.Run.ChunkCount : 0;
        foreach (var e in profile.ChunkEvents) counts[e.Kind] = Math.Max(counts[e.Kind], e.Index + 1);

        int rows = 0;
        foreach (var c in counts.Values) rows += c;
        // Label every chunk while the labels fit, else every k-th; the gap between kinds grows with k
        // so that one kind's last label does not run into the next kind's first.
        int every = Math.Max(1, (int)Math.Ceiling(rows / 36.0));
        var rowOf = new Dictionary<(ChunkKind, int), double>();
        var groups = new List<(ChunkKind Kind, double Top, int Count)>();
        double y = 0;
        foreach (var kind in Enum.GetValues<ChunkKind>())
        {
            if (counts[kind] == 0) continue;
            double top = y;
            for (int i = 0; i < counts[kind]; i++) rowOf[(kind, i)] = y--;
            groups.Add((kind, top, counts[kind]));
            y -= every; // blank rows between kinds
        }
        double half = rows <= 60 ? 0.42 : 0.5; // gaps between rows only while they stay visible

        // Stage strip above the chunks, so the reader sees forward / backward / optimizer at a glance.
        double stripHalf = Math.Max(0.6, rows * 0.02);
        double stripY = 1 + every + stripHalf;
        foreach (var (start, end, stage) in StageSpans(profile, endMs))
        {
            var r = plot.Add.Rectangle(start / time.Divisor, end / time.Divisor, stripY - stripHalf, stripY + stripHalf);
            r.FillColor = StageColor(stage).WithAlpha(0.85);
            r.LineWidth = 0;
        }

        bool onDisk = false;
        foreach (var span in TierOccupancy.Spans(profile, endMs))
        {
            AddResidency(plot, span.FromMs, span.ToMs, rowOf[(span.Kind, span.Index)], half, span.Tier, time);
            onDisk |= span.Tier == Tier.Disk;
        }

        foreach (double start in IterationStarts(profile))
        {
            var v = plot.Add.VerticalLine(start / time.Divisor, 1, Color.FromHex("#333333"), LinePattern.Dotted);
            v.LegendText = "";
        }
        for (int g = 1; g < groups.Count; g++)
            plot.Add.HorizontalLine(groups[g].Top + (every + 1) / 2.0, 1, Color.FromHex("#888888"));

        // Y labels: every chunk while they fit, else every k-th; the stage strip gets its own label.
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        ticks.AddMajor(stripY, "stage");
        foreach (var (kind, _, count) in groups)
            for (int i = 0; i < count; i++)
                if (i % every == 0) ticks.AddMajor(rowOf[(kind, i)], $"{Name(kind)} {i}");
        plot.Axes.Left.TickGenerator = ticks;
        plot.HideGrid();

        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "on device", FillColor = DeviceColor });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "on host", FillColor = HostColor });
        if (onDisk) plot.Legend.ManualItems.Add(new LegendItem { LabelText = "on disk", FillColor = DiskColor });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "released", FillColor = ReleasedColor });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "forward", FillColor = StageColor(ProfileStage.Forward) });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "backward", FillColor = StageColor(ProfileStage.Backward) });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "optimizer", FillColor = StageColor(ProfileStage.Optimizer) });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "iteration start", LineColor = Color.FromHex("#333333"), LinePattern = LinePattern.Dotted, LineWidth = 1 });

        if (rows == 0) plot.Add.Annotation("No chunk events were recorded in this profile.");
        plot.Title($"Chunk residency ({profile.Run.Engine} engine, {profile.Run.ChunkCount} chunks per kind, {profile.Run.ChunkSizeElements:N0} elements each{Describe(iterations)})\n{profile.Run.Model}");
        plot.XLabel($"time since recording started ({time.Unit})");
        plot.YLabel("chunk (kind, index)");
        plot.Axes.SetLimits(fromMs / time.Divisor, toMs / time.Divisor, y + every - 0.5, stripY + stripHalf + 0.5);
        plot.ShowLegend(Edge.Right);
        return Save(plot, path, ChunksWidth, ChunksHeight);
    }

    /// <summary>Training loss per step, with validation loss as points where it was measured.</summary>
    public static string Loss(IReadOnlyList<LossPoint> points, string title, string path)
    {
        var plot = NewPlot();
        var xs = new double[points.Count];
        var ys = new double[points.Count];
        for (int i = 0; i < points.Count; i++) (xs[i], ys[i]) = (points[i].Step, points[i].Loss);
        var train = plot.Add.ScatterLine(xs, ys, Color.FromHex("#4E79A7"));
        train.LineWidth = 2;
        train.LegendText = "training loss";
        if (points.Count == 1) { train.MarkerSize = 6; train.MarkerShape = MarkerShape.FilledCircle; }

        var vx = new List<double>();
        var vy = new List<double>();
        foreach (var p in points) if (p.ValLoss is double v) { vx.Add(p.Step); vy.Add(v); }
        if (vx.Count > 0)
        {
            var val = plot.Add.Scatter(vx.ToArray(), vy.ToArray(), Color.FromHex("#E15759"));
            val.MarkerSize = 8;
            val.MarkerShape = MarkerShape.FilledCircle;
            val.LineWidth = 1;
            val.LinePattern = LinePattern.Dashed;
            val.LegendText = "validation loss";
        }

        plot.Title(title);
        plot.XLabel("step");
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.YLabel("loss (cross-entropy, nats per token)");
        plot.ShowLegend(Alignment.UpperRight);
        return Save(plot, path, LossWidth, LossHeight);
    }

    internal static Plot NewPlot()
    {
        var plot = new Plot();
        PlotFonts.Apply(plot);
        return plot;
    }

    internal static string Save(Plot plot, string path, int width, int height)
    {
        plot.SavePng(path, width, height);
        return path;
    }

    private static void AddResidency(Plot plot, double fromMs, double toMs, double row, double half, Tier? tier, (double Divisor, string Unit) time)
    {
        if (toMs <= fromMs) return;
        var r = plot.Add.Rectangle(fromMs / time.Divisor, toMs / time.Divisor, row - half, row + half);
        r.FillColor = tier switch { Tier.Device => DeviceColor, Tier.Host => HostColor, Tier.Disk => DiskColor, _ => ReleasedColor };
        r.LineWidth = 0;
    }

    /// <summary>Adds one band of a stacked area (step-shaped), from <paramref name="lower"/> up by the selected bytes; advances lower.</summary>
    private static void AddStepBand(Plot plot, Profile profile, (double Divisor, string Unit) time, double endMs,
                                    double[] lower, Func<int, long> bytes, double byteDivisor, Color color, string label)
    {
        var moments = profile.Moments;
        var points = new List<(double, double, double)>(moments.Count * 2);
        for (int i = 0; i < moments.Count; i++)
        {
            double lo = lower[i], hi = lo + bytes(i) / byteDivisor;
            double next = i + 1 < moments.Count ? moments[i + 1].TimeMs : endMs;
            points.Add((moments[i].TimeMs / time.Divisor, lo, hi));
            points.Add((next / time.Divisor, lo, hi));
            lower[i] = hi;
        }
        var fill = plot.Add.FillY(points);
        fill.FillColor = color;
        fill.LineWidth = 0;
        fill.LegendText = label;
    }

    private static (double[] Xs, double[] Ys) Steps(Profile profile, (double Divisor, string Unit) time, double endMs, Func<int, double> value)
    {
        var moments = profile.Moments;
        var xs = new double[moments.Count * 2];
        var ys = new double[moments.Count * 2];
        for (int i = 0; i < moments.Count; i++)
        {
            double next = i + 1 < moments.Count ? moments[i + 1].TimeMs : endMs;
            xs[2 * i] = moments[i].TimeMs / time.Divisor;
            xs[2 * i + 1] = next / time.Divisor;
            ys[2 * i] = ys[2 * i + 1] = value(i);
        }
        return (xs, ys);
    }

    internal static void AddStageBands(Plot plot, Profile profile, (double Divisor, string Unit) time, double endMs)
    {
        var seen = new HashSet<ProfileStage>();
        foreach (var (start, end, stage) in StageSpans(profile, endMs))
        {
            var span = plot.Add.HorizontalSpan(start / time.Divisor, end / time.Divisor, StageColor(stage, band: true));
            span.LineWidth = 0;
            seen.Add(stage);
        }
        // Manual items: a span's own legend symbol is drawn over the first letter of its label.
        foreach (var stage in Enum.GetValues<ProfileStage>())
            if (seen.Contains(stage))
                plot.Legend.ManualItems.Add(new LegendItem { LabelText = $"{Name(stage)} phase", FillColor = StageColor(stage, band: true).WithAlpha(0.45) });
    }

    /// <summary>Stage spans from the recorded phases, or, when none were recorded, from runs of moments of one stage.</summary>
    private static List<(double Start, double End, ProfileStage Stage)> StageSpans(Profile profile, double endMs)
    {
        var spans = new List<(double, double, ProfileStage)>();
        if (profile.Phases.Count > 0)
        {
            foreach (var p in profile.Phases) spans.Add((p.StartMs, p.EndMs, p.Stage));
            return spans;
        }
        var m = profile.Moments;
        for (int i = 0; i < m.Count;)
        {
            int j = i;
            while (j + 1 < m.Count && m[j + 1].Stage == m[i].Stage && m[j + 1].Iteration == m[i].Iteration) j++;
            double end = j + 1 < m.Count ? m[j + 1].TimeMs : endMs;
            spans.Add((m[i].TimeMs, end, m[i].Stage));
            i = j + 1;
        }
        return spans;
    }

    private static List<double> IterationStarts(Profile profile)
    {
        var starts = new List<double>();
        int? last = null;
        foreach (var m in profile.Moments)
        {
            if (m.Iteration == last) continue;
            last = m.Iteration;
            double start = m.TimeMs;
            foreach (var p in profile.Phases) if (p.Iteration == m.Iteration) start = Math.Min(start, p.StartMs);
            starts.Add(start);
        }
        return starts;
    }

    /// <summary>The last time anything was recorded, so the final moment's state is drawn with some width.</summary>
    internal static double EndMs(Profile profile)
    {
        double end = 0;
        foreach (var m in profile.Moments) end = Math.Max(end, m.TimeMs);
        foreach (var e in profile.ChunkEvents) end = Math.Max(end, e.TimeMs);
        foreach (var p in profile.Phases) end = Math.Max(end, p.EndMs);
        // Pad, so that the last state (the final moment, a chunk released at the very end) is drawn with some width.
        double pad = 0.015 * end;
        if (profile.Moments.Count > 1 && end <= profile.Moments[^1].TimeMs)
            pad = Math.Max(pad, (profile.Moments[^1].TimeMs - profile.Moments[0].TimeMs) / (profile.Moments.Count - 1));
        end += pad;
        return end > 0 ? end : 1;
    }

    internal static (double Divisor, string Unit) TimeUnit(double spanMs) => spanMs >= 2000 ? (1000, "s") : (1, "ms");

    /// <summary>Throws the error --iterations would give, before anything is written.</summary>
    public static void CheckIterations(Profile profile, IterationRange? range) => Window(profile, range, EndMs(profile));

    /// <summary>The time span the figures show: everything, or from the first selected iteration's start to the next one's.</summary>
    internal static (double FromMs, double ToMs) Window(Profile profile, IterationRange? range, double endMs)
    {
        if (range is not IterationRange r) return (0, endMs);
        double from = double.PositiveInfinity, to = double.PositiveInfinity;
        int first = int.MaxValue, last = int.MinValue;
        foreach (var m in profile.Moments)
        {
            first = Math.Min(first, m.Iteration);
            last = Math.Max(last, m.Iteration);
            if (m.Iteration >= r.First && m.Iteration <= r.Last) from = Math.Min(from, m.TimeMs);
            else if (m.Iteration > r.Last) to = Math.Min(to, m.TimeMs);
        }
        foreach (var p in profile.Phases)
        {
            if (p.Iteration >= r.First && p.Iteration <= r.Last) from = Math.Min(from, p.StartMs);
            else if (p.Iteration > r.Last) to = Math.Min(to, p.StartMs);
        }
        if (double.IsPositiveInfinity(from))
            throw new ArgumentException(profile.Moments.Count == 0
                ? $"--iterations {r}: the profile has no moments, so no iteration can be selected; leave --iterations out."
                : $"--iterations {r} selects no recorded iteration; the profile has iterations {first} to {last}.");
        return (from, double.IsPositiveInfinity(to) ? endMs : to);
    }

    internal static string Describe(IterationRange? range) => range is IterationRange r
        ? (r.First == r.Last ? $", iteration {r.First}" : $", iterations {r.First} to {r.Last}")
        : "";

    internal static (double Divisor, string Unit) ByteUnit(double maxBytes) =>
        maxBytes >= 2 * GiB ? (GiB, "GiB") : maxBytes >= 2 * MiB ? (MiB, "MiB") : (KiB, "KiB");

    private static Color StageColor(ProfileStage stage, bool band = false) => stage switch
    {
        ProfileStage.Forward => band ? ForwardBand : ForwardBand.WithAlpha(1.0),
        ProfileStage.Backward => band ? BackwardBand : BackwardBand.WithAlpha(1.0),
        _ => band ? OptimizerBand : OptimizerBand.WithAlpha(1.0),
    };

    private static string Name(ChunkKind kind) => kind.ToString().ToLowerInvariant();
    private static string Name(ProfileStage stage) => stage.ToString().ToLowerInvariant();
}
