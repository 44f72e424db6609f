using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>One dtype's matmul peak as measured: the size actually used (it shrinks where the dtype crawls) and the raw timings.</summary>
public sealed record MatmulResult(string DType, int N, double Gflops, List<double> Seconds);

/// <summary>Part `matmul`: the bf16 and fp32 matmul peaks, the ceiling the trainers' TFLOPS are compared with.</summary>
public sealed class MatmulPart : IBenchPart
{
    public string Name => "matmul";

    public void Run(BenchContext context)
    {
        var s = context.Settings;
        BenchContext.Progress($"matmul peak, {s.MatmulSize}^3 where the device is fast enough (bf16, then fp32)...");
        context.Bf16Matmul = Measure(context, torch.ScalarType.BFloat16, "bf16");
        context.Fp32Matmul = Measure(context, torch.ScalarType.Float32, "fp32");

        var table = new ReportTable("matmul peak (n×n by n×n, 2n³ FLOPs)")
            .Column("dtype", right: false).Column("n").Column("timed reps").Column("median s").Column("GFLOPS").Column("vs fp32");
        foreach (var r in new[] { context.Bf16Matmul, context.Fp32Matmul })
            table.Row(r.DType, $"{r.N}", $"{r.Seconds.Count}", $"{PatrickStar.Benchmarks.Measure.Median(r.Seconds):0.0000}",
                $"{r.Gflops:N1}", $"{r.Gflops / context.Fp32Matmul.Gflops:0.00}x");
        foreach (var r in new[] { context.Bf16Matmul, context.Fp32Matmul }.Where(r => r.N < s.MatmulSize))
            table.Notes.Add($"{r.DType}: n = {r.N}, not {s.MatmulSize}: one {s.MatmulSize}³ product would not fit the {s.MatmulBudgetSeconds:0} s budget here.");
        context.Report.Add(Name, table);

        context.Report.Json[Name] = new JsonObject
        {
            ["requested_n"] = s.MatmulSize,
            ["budget_seconds"] = s.MatmulBudgetSeconds,
            ["bf16"] = Json(context.Bf16Matmul),
            ["fp32"] = Json(context.Fp32Matmul),
        };
    }

    private static MatmulResult Measure(BenchContext context, torch.ScalarType dtype, string name)
    {
        var s = context.Settings;
        var (gflops, n, seconds) = MatmulPeak.Run(context.Device, dtype, n: s.MatmulSize, reps: s.MatmulReps, budgetSeconds: s.MatmulBudgetSeconds);
        return new MatmulResult(name, n, gflops, seconds);
    }

    private static JsonObject Json(MatmulResult r) => new()
    {
        ["n"] = r.N,
        ["gflops"] = r.Gflops,
        ["median_seconds"] = PatrickStar.Benchmarks.Measure.Median(r.Seconds),
        ["seconds"] = BenchReport.Array(r.Seconds),
    };
}
