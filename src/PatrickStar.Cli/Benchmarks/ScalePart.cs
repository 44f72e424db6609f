using PatrickStar.Config;
using System.Text.Json.Nodes;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>Part `scale`: the largest model of the chosen family (layers at a fixed width) the plain trainer, static and dynamic placement each
/// train under the budgets; with --disk-dir and --disk-memory also dynamic placement with the disk tier, beside it.</summary>
public sealed class ScalePart : IBenchPart
{
    private const int Seq = 64;
    private const int MaxLayers = 512;

    public string Name => "scale";

    public void Run(BenchContext context)
    {
        var s = context.Settings;
        long device = s.ScaleDeviceMemory, host = s.ScaleHostMemory;
        string name = s.Family == "llama" ? "LLaMA" : "GPT";
        BenchContext.Progress($"largest {name} (hidden {s.ScaleHidden}, seq {Seq}, batch 1, layers searched, {PrecisionNames.Name(s.Precision ?? PatrickStar.Config.Precision.Fp32)}) per engine under " +
                              $"{Bytes.Format(device)} device / {Bytes.Format(host)} host...");
        var precision = s.Precision ?? PatrickStar.Config.Precision.Fp32; // the search is about memory: auto means fp32 here
        var budgets = new ScaleBenchmark.Budgets(device, host, s.ScaleDiskDir, s.ScaleDiskMemory);
        if (budgets.HasDisk) BenchContext.Progress($"...and dynamic placement with a {Bytes.Format(budgets.DiskMemory!.Value)} disk tier in {budgets.DiskDir}");
        var outcomes = ScaleBenchmark.Run(budgets, s.ScaleHidden, s.ScaleHeads, Seq, MaxLayers, precision, s.Family, s.KvHeads);
        var shape = GptRun.ResolveChoice(ScaleBenchmark.Config("static", 1, device, host, s.ScaleHidden, s.ScaleHeads, Seq, precision, s.Family, s.KvHeads)).Llama;
        long limit = (device + host) / 14;
        long staticParams = outcomes.First(o => o.Policy == "static").Parameters;

        var table = new ReportTable($"largest trainable {name} under {Bytes.Format(device)} device + {Bytes.Format(host)} host")
            .Column("engine", right: false).Column("layers").Column("parameters").Column("of (device+host)/14").Column("vs static");
        foreach (var o in outcomes)
            table.Row(o.Policy, $"{o.Layers}", $"{o.Parameters:N0}", $"{100.0 * o.Parameters / limit:0.0}%",
                staticParams > 0 ? $"{(double)o.Parameters / staticParams:0.00}x" : "-");
        if (shape is not null)
            table.Notes.Add($"LLaMA shape: {shape.Heads} heads, {shape.KvHeads} key/value heads, MLP width {shape.Intermediate} (8/3 of hidden, rounded up to 256), untied head, GPT-2 vocabulary.");
        table.Notes.Add($"memory limit (device + host) / 14 B per parameter = {limit:N0} parameters; each size trains 3 steps to count.");
        if (DiskNote(outcomes, budgets) is string note) table.Notes.Add(note);
        context.Report.Add(Name, table);

        context.Report.Json[Name] = new JsonObject
        {
            ["device_bytes"] = device,
            ["host_bytes"] = host,
            ["family"] = s.Family,
            ["hidden"] = s.ScaleHidden,
            ["heads"] = s.ScaleHeads,
            ["kv_heads"] = shape?.KvHeads,
            ["intermediate"] = shape?.Intermediate,
            ["seq"] = Seq,
            ["precision"] = PrecisionNames.Name(precision),
            ["limit_parameters"] = limit,
            ["disk_dir"] = budgets.DiskDir,
            ["disk_bytes"] = budgets.DiskMemory,
            ["results"] = new JsonArray(outcomes.Select(o => (JsonNode)new JsonObject
            {
                ["engine"] = o.Policy, ["layers"] = o.Layers, ["parameters"] = o.Parameters,
            }).ToArray()),
        };
    }

    /// <summary>The largest model with the disk tier beside the largest without it (dynamic placement both).</summary>
    public static string? DiskNote(IReadOnlyList<ScaleBenchmark.Outcome> outcomes, ScaleBenchmark.Budgets budgets)
    {
        if (!budgets.HasDisk) return null;
        var without = outcomes.First(o => o.Policy == "dynamic");
        var with = outcomes.First(o => o.Policy == ScaleBenchmark.DiskPolicy);
        string ratio = without.Parameters > 0 ? $" ({(double)with.Parameters / without.Parameters:0.00}x)" : "";
        return $"with a {Bytes.Format(budgets.DiskMemory!.Value)} disk tier: {with.Layers} layers, {with.Parameters:N0} parameters{ratio}; " +
               $"without: {without.Layers} layers, {without.Parameters:N0} parameters (dynamic placement both).";
    }
}
