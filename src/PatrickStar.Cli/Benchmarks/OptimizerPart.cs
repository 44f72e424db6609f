using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Profiling;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Part `optimizer`: the Adam step over the same elements four ways (torch.optim.AdamW, tensor ops, the fused kernel
/// with fp32 gradients and with bf16 gradients → bf16 parameters), the bound of each (a probe with Adam's own memory traffic), and STREAM bandwidth.
/// </summary>
public sealed class OptimizerPart : IBenchPart
{
    public string Name => "optimizer";

    public void Run(BenchContext context)
    {
        long elements = context.Settings.AdamElements;
        BenchContext.Progress($"optimizer step over {elements:N0} fp32 elements: torch.optim.AdamW, tensor ops, the fused kernel; then the Adam-traffic bounds and STREAM bandwidth...");
        var report = OptimizerBenchmark.Run(elements, warmup: 1, reps: context.Settings.AdamReps);
        double torchRate = report.Timings[0].ElementsPerSecond;

        var table = new ReportTable($"Adam step, {Count(elements)} elements")
            .Column("implementation", right: false).Column("median s").Column("G elem/s").Column("x torch").Column("of bound");
        foreach (var t in report.Timings)
            table.Row(t.Name, $"{t.MedianSeconds:0.0000}", $"{t.ElementsPerSecond / 1e9:0.000}",
                $"{t.ElementsPerSecond / torchRate:0.00}x", Percent(t.ElementsPerSecond / report.BoundFor(t).BestElementsPerSecond));
        table.Notes.Add("bound = the best of the timed runs of a probe with the Adam step's own memory traffic and next to no arithmetic " +
                        "(read gradient, master, momentum, variance; write the last three back in place; same element types, tiles, " +
                        "threads and vector width as the fused kernel): fp32 grads " + Describe(report.Fp32Bound) +
                        "; bf16 grads -> bf16 params " + Describe(report.Bf16Bound) + ". The fp32 bound applies to every fp32-gradient row.");
        context.Report.Add(Name, table);

        var bandwidth = new ReportTable("memory bandwidth (STREAM-style, bytes read + written, all cores)")
            .Column("kernel", right: false).Column("GiB/s");
        bandwidth.Row("copy  a = b", $"{report.Bandwidth.CopyBytesPerSecond / (1L << 30):0.0}");
        bandwidth.Row("triad a = b + s·c", $"{report.Bandwidth.TriadBytesPerSecond / (1L << 30):0.0}");
        bandwidth.Row("update a = a + s·c (in place)", $"{report.Bandwidth.UpdateBytesPerSecond / (1L << 30):0.0}");
        bandwidth.Notes.Add($"measured over three arrays of {Count(elements)} fp32 elements ({Bytes.Format(elements * 4.0)} each).");
        context.Report.Add(Name, bandwidth);

        context.Report.Json[Name] = new JsonObject
        {
            ["elements"] = elements,
            ["stream_copy_bytes_per_second"] = report.Bandwidth.CopyBytesPerSecond,
            ["stream_triad_bytes_per_second"] = report.Bandwidth.TriadBytesPerSecond,
            ["in_place_update_bytes_per_second"] = report.Bandwidth.UpdateBytesPerSecond,
            ["adam_traffic_bounds"] = new JsonArray(new[] { report.Fp32Bound, report.Bf16Bound }.Select(b => (JsonNode)new JsonObject
            {
                ["grad_type"] = b.GradType.ToString(),
                ["param_type"] = b.ParamType?.ToString(),
                ["bytes_per_element"] = b.BytesPerElement,
                ["best_elements_per_second"] = b.BestElementsPerSecond,
                ["median_elements_per_second"] = b.MedianElementsPerSecond,
                ["seconds"] = BenchReport.Array(b.Seconds),
            }).ToArray()),
            ["timings"] = new JsonArray(report.Timings.Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name,
                ["median_seconds"] = t.MedianSeconds,
                ["elements_per_second"] = t.ElementsPerSecond,
                ["times_torch"] = t.ElementsPerSecond / torchRate,
                ["fraction_of_bound"] = t.ElementsPerSecond / report.BoundFor(t).BestElementsPerSecond,
                ["seconds"] = BenchReport.Array(t.Seconds),
            }).ToArray()),
        };
    }

    private static string Describe(AdamBound b) =>
        $"{b.BestElementsPerSecond / 1e9:0.000} G elem/s ({Bytes.Format(b.BestElementsPerSecond * b.BytesPerElement)}/s at {b.BytesPerElement} B per element; " +
        $"median {b.MedianElementsPerSecond / 1e9:0.000} G elem/s)";

    // Invariant "P0" puts a space before the sign; "87%" reads better in a table.
    private static string Percent(double fraction) => $"{fraction * 100:N0}%";

    // 16M = 16 * 2^20 elements: "M" is the binary million here, as in the sizes the bench takes.
    private static string Count(long n) => n >= 1 << 20 && n % (1 << 20) == 0 ? $"{n >> 20}Mi ({n:N0})" : $"{n:N0}";
}
