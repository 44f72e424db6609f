using System.CommandLine;
using PatrickStar.Cli.Plotting;
using PatrickStar.Profiling;
using PatrickStar.Runtime;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar plot PROFILE`: memory, chunk residency and loss figures (PNG) from a recorded profile.</summary>
public static class PlotCommand
{
    /// <summary>The metrics file looked for beside a profile when --metrics is not given and the profile has no steps.</summary>
    public const string MetricsBesideProfile = "metrics.jsonl";

    public static Command Build()
    {
        var file = new Argument<FileInfo>("profile") { Description = "Profile JSON written by the chunk engine (format patrickstar-profile)." };
        var outDir = new Option<DirectoryInfo?>("--out") { Description = "Folder for the figures (default: the profile's folder). Created if missing." };
        var metrics = new Option<FileInfo?>("--metrics")
        {
            Description = $"Metrics JSON Lines (pstar train --metrics) for the loss curve; by default the profile's steps, else {MetricsBesideProfile} beside the profile.",
        };
        var iterations = new Option<string?>("--iterations")
        {
            Description = "Show only these iterations in memory.png, chunks.png and tiers.png: N, or A:B (inclusive). Default: all.",
        };
        var command = new Command("plot", "Draw memory.png (device memory per moment), chunks.png (which tier each chunk is in), " +
                                          "tiers.png (chunk bytes per tier: device, host, disk) and loss.png from a profile; " +
                                          "then print the peak per tier and the disk I/O (bytes, seconds, overlapped fraction)." + Examples.Format(
                                              "pstar train --engine chunked --steps 5 --profile run.json && pstar plot run.json --out figures/",
                                              "pstar plot run.json --iterations 2:3 --metrics metrics.jsonl"));
        command.Arguments.Add(file);
        command.Options.Add(outDir);
        command.Options.Add(metrics);
        command.Options.Add(iterations);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            string profilePath = r.GetValue(file)!.FullName;
            string dir = r.GetValue(outDir)?.FullName ?? Path.GetDirectoryName(profilePath)!;
            OutputPaths.EnsureWritableDirectory(dir, r.GetValue(outDir) is null ? "folder of the profile (where the figures go; choose another with --out)" : "--out folder");
            var profile = Profile.Load(profilePath);
            IterationRange? range = r.GetValue(iterations) is string text ? IterationRange.Parse(text) : null;
            ProfilePlots.CheckIterations(profile, range);

            // Read the loss data before writing anything, so a bad metrics file leaves no half set of figures.
            var (loss, lossSource) = LossFor(profile, profilePath, r.GetValue(metrics)?.FullName);

            Directory.CreateDirectory(dir);
            Console.WriteLine(ProfilePlots.Memory(profile, Path.Combine(dir, "memory.png"), range));
            Console.WriteLine(ProfilePlots.Chunks(profile, Path.Combine(dir, "chunks.png"), range));
            Console.WriteLine(TierPlots.Tiers(profile, Path.Combine(dir, "tiers.png"), range));
            if (loss.Count > 0)
            {
                string title = $"Loss: {profile.Run.Model} ({profile.Run.Engine} engine; from {lossSource})";
                Console.WriteLine(ProfilePlots.Loss(loss, title, Path.Combine(dir, "loss.png")));
            }
            else
            {
                Console.Error.WriteLine($"note: loss.png not drawn: the profile has no steps and there is no {MetricsBesideProfile} beside it " +
                                        "(pass one with --metrics).");
            }
            foreach (string line in ProfileSummary.Of(profile).Lines()) Console.WriteLine(line);
            return 0;
        }));
        return command;
    }

    private static (List<LossPoint> Points, string Source) LossFor(Profile profile, string profilePath, string? metricsPath)
    {
        if (metricsPath is not null) return (LossSeries.FromMetrics(metricsPath), Path.GetFileName(metricsPath));
        if (profile.Steps.Count > 0) return (LossSeries.FromProfile(profile), "profile steps");
        string beside = Path.Combine(Path.GetDirectoryName(profilePath)!, MetricsBesideProfile);
        return File.Exists(beside) ? (LossSeries.FromMetrics(beside), MetricsBesideProfile) : (new List<LossPoint>(), "");
    }
}
