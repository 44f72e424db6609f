using System.Text.Json.Nodes;
using PatrickStar.Config;
using PatrickStar.Models.Generation;
using PatrickStar.Models.Gpt;
using PatrickStar.Training;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Clock = PatrickStar.Benchmarks.Measure;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Part `ceiling`: libtorch's own limit on the trainers' model. Every matrix product of one training step
/// (<see cref="GptGemms"/>: the exact shapes, layouts and dtype the model runs) is timed alone in libtorch, median after
/// warm-up; their sum is the shortest step any trainer built on these products could take, and model FLOPs over it the
/// best MFU. The attention path the model really runs (batched products in bf16 on a CPU, else causal SDPA) is timed alone too.
/// Run after `trainers` (as --parts orders it), the trainers' medians are set against the ceiling.
/// </summary>
public sealed class CeilingPart : IBenchPart
{
    public string Name => "ceiling";

    private const int Warmup = 2;

    public void Run(BenchContext context)
    {
        var s = context.Settings;
        var precision = s.Precision ?? context.TrainersPrecision ?? TrainersPart.ChoosePrecision(context);
        var dtype = PlainEngine.ActivationType(precision);
        var gpt = new GptConfig(GptConfig.Gpt2VocabSize, s.Seq, s.Layers, s.Hidden, s.Heads); // as the trainers part builds it
        gpt.Validate();
        var gemms = GptGemms.OfStep(gpt, s.Batch, s.Seq);
        double modelFlops = gpt.TrainingFlops(s.Batch, s.Seq);
        var peak = dtype == ScalarType.BFloat16 ? context.Bf16Matmul : context.Fp32Matmul;
        int reps = s.Quick ? 3 : 9;
        string dtypeName = dtype == ScalarType.BFloat16 ? "bf16" : "fp32";
        BenchContext.Progress($"ceiling: the {gemms.Count} matrix products of one step alone in libtorch ({dtypeName}), {Warmup} warm-up + {reps} timed each...");

        var timed = gemms.Select(g => (Gemm: g, Seconds: Clock.Median(TimeGemm(g, dtype, context.Device, reps)))).ToList();
        var (sdpaForward, sdpaStep) = TimeAttention(s, dtype, context.Device, reps);

        double Sum(Func<(Gemm Gemm, double Seconds), bool> which) => timed.Where(which).Sum(t => t.Seconds * t.Gemm.Count);
        double gemmSeconds = Sum(_ => true);
        double attentionGemmSeconds = Sum(t => t.Gemm.Name.StartsWith("attention"));
        double forwardSeconds = Sum(t => t.Gemm.Pass == "forward");
        // The model runs attention as one call per layer (with its softmax, mask and head reshapes), not as these products alone.
        double withSdpa = gemmSeconds - attentionGemmSeconds + s.Layers * sdpaStep;
        double? Fraction(double seconds) => peak is null ? null : modelFlops / seconds / 1e9 / peak.Gflops;
        string Percent(double seconds) => Fraction(seconds) is double f ? $"{f * 100:0.0}%" : "-";

        var table = new ReportTable($"ceiling: one step's matrix products alone in libtorch ({dtypeName}, batch {s.Batch} × seq {s.Seq}, median s)")
            .Column("product", right: false).Column("pass", right: false).Column("shape", right: false).Column("× per step")
            .Column("s each").Column("GFLOPS").Column($"of {dtypeName} peak").Column("s per step");
        foreach (var (g, sec) in timed)
            table.Row(g.Name, g.Pass, g.Shape, $"{g.Count}", $"{sec:0.000000}", $"{g.Flops / sec / 1e9:N1}",
                peak is null ? "-" : $"{g.Flops / sec / 1e9 / peak.Gflops * 100:0.0}%", $"{sec * g.Count:0.0000}");
        table.Notes.Add($"All products: {gemmSeconds:0.0000} s per step ({forwardSeconds:0.0000} forward, {gemmSeconds - forwardSeconds:0.0000} backward) " +
                        $"for {modelFlops / 1e12:0.000} TFLOP of model FLOPs ({GptConfig.FlopsFormula}): {Percent(gemmSeconds)} of the {dtypeName} matmul peak. " +
                        "No trainer built on libtorch's products can step faster than this.");
        string attentionPath = BatchedCausalAttention.Applies(dtype, context.Device, s.Seq, 0) ? "batched products around a softmax" : "scaled_dot_product_attention";
        table.Notes.Add($"Attention as the model runs it ({attentionPath}, causal, {s.Heads} heads, heads split and merged): forward {sdpaForward:0.000000} s, " +
                        $"forward + backward {sdpaStep:0.000000} s per layer, against {attentionGemmSeconds / s.Layers:0.000000} s for its products as batched matmuls. " +
                        $"With it in their place: {withSdpa:0.0000} s per step, {Percent(withSdpa)} of peak.");
        foreach (var (label, seconds) in context.TrainerSteps)
            table.Notes.Add($"{label}: {seconds:0.0000} s per step = {seconds / gemmSeconds:0.00}x the products alone, {Percent(seconds)} of peak; " +
                            $"{seconds - withSdpa:0.0000} s of each step is outside the products and attention.");
        if (peak is null) table.Notes.Add("No matmul part in this sitting: fractions of peak need --parts matmul too.");
        context.Report.Add(Name, table);

        context.Report.Json[Name] = new JsonObject
        {
            ["dtype"] = dtypeName,
            ["model_flops_per_step"] = modelFlops,
            ["gemm_flops_per_step"] = gemms.Sum(g => g.StepFlops),
            ["matmul_peak_gflops"] = peak?.Gflops,
            ["gemm_seconds_per_step"] = gemmSeconds,
            ["gemm_forward_seconds_per_step"] = forwardSeconds,
            ["gemm_backward_seconds_per_step"] = gemmSeconds - forwardSeconds,
            ["gemm_only_fraction_of_matmul_peak"] = Fraction(gemmSeconds),
            ["sdpa_forward_seconds_per_layer"] = sdpaForward,
            ["sdpa_forward_backward_seconds_per_layer"] = sdpaStep,
            ["attention_gemm_seconds_per_layer"] = attentionGemmSeconds / s.Layers,
            ["ceiling_step_seconds_with_sdpa"] = withSdpa,
            ["ceiling_with_sdpa_fraction_of_matmul_peak"] = Fraction(withSdpa),
            ["trainers"] = new JsonArray(context.TrainerSteps.Select(t => (JsonNode)new JsonObject
            {
                ["label"] = t.Label, ["median_step_seconds"] = t.Seconds, ["x_gemm_seconds"] = t.Seconds / gemmSeconds,
                ["seconds_outside_gemms_and_sdpa"] = t.Seconds - withSdpa,
            }).ToArray()),
            ["gemms"] = new JsonArray(timed.Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Gemm.Name, ["pass"] = t.Gemm.Pass, ["batch"] = t.Gemm.Batch, ["m"] = t.Gemm.M, ["k"] = t.Gemm.K, ["n"] = t.Gemm.N,
                ["transpose_a"] = t.Gemm.TransposeA, ["transpose_b"] = t.Gemm.TransposeB, ["count_per_step"] = t.Gemm.Count,
                ["flops"] = t.Gemm.Flops, ["median_seconds"] = t.Seconds, ["gflops"] = t.Gemm.Flops / t.Seconds / 1e9,
            }).ToArray()),
        };
    }

    /// <summary>
    /// Seconds of single runs of <paramref name="g"/>, operands stored as the model stores them (a transposed one read through a
    /// view): the fastest (by median) of a product into a fresh result, one written over a kept result and, for a tall
    /// Aᵀ·B (the LM head's d/dW), one written over a kept result in row slices as the head makes it (RowSlicedProduct). A
    /// fresh result of the LM head's size ([V, h]) is fresh pages after a chunked run (large freed blocks go back to the
    /// system), and page faults are not the product: timed that way alone, a trainer writing into kept storage stepped faster
    /// than the "ceiling". Every form the trainers use is timed, so that the ceiling stays one no trainer can pass.
    /// </summary>
    internal static List<double> TimeGemm(Gemm g, ScalarType dtype, Device device, int reps)
    {
        var fresh = TimeGemm(g, dtype, device, reps, kept: false);
        if (g.Batch != 1) return fresh; // attention's batched products: results of a few MB, and no in-place form in TorchSharp
        var best = new[] { fresh, TimeGemm(g, dtype, device, reps, kept: true) }.MinBy(Clock.Median)!;
        if (!g.TransposeA || g.M <= RowSlicedProduct.SliceRows) return best;
        var sliced = TimeGemm(g, dtype, device, reps, kept: true, sliced: true);
        return Clock.Median(sliced) < Clock.Median(best) ? sliced : best;
    }

    private static List<double> TimeGemm(Gemm g, ScalarType dtype, Device device, int reps, bool kept, bool sliced = false)
    {
        using var scope = NewDisposeScope();
        Tensor Operand(long rows, long cols, bool transposed)
        {
            var stored = transposed ? randn(g.Batch, cols, rows, dtype: dtype, device: device) : randn(g.Batch, rows, cols, dtype: dtype, device: device);
            var view = transposed ? stored.transpose(1, 2) : stored;
            return g.Batch == 1 ? view.squeeze(0) : view;
        }
        var a = Operand(g.M, g.K, g.TransposeA);
        var b = Operand(g.K, g.N, g.TransposeB);
        var result = kept ? zeros(g.M, g.N, dtype: dtype, device: device) : null;
        var aStored = sliced ? a.t() : null; // [k, M], as the head's logits' gradient is stored
        return Clock.Repeat(Warmup, reps, () =>
        {
            if (sliced) RowSlicedProduct.AddTransposedA(result!, aStored!, b, beta: 0);
            else if (result is not null) result.addmm_(a, b, beta: 0);
            else
            {
                using var c = g.Batch == 1 ? a.mm(b) : a.bmm(b);
            }
            Synchronize(device);
        });
    }

    /// <summary>Median seconds of one layer's attention as the model runs it: forward alone, and forward + backward.</summary>
    private static (double Forward, double Step) TimeAttention(BenchSettings s, ScalarType dtype, Device device, int reps)
    {
        using var scope = NewDisposeScope();
        long b = s.Batch, t = s.Seq, h = s.Hidden;
        var qkv = randn(b, t, 3 * h, dtype: dtype, device: device).requires_grad_();
        var gradient = randn(b, t, h, dtype: dtype, device: device);
        bool batched = BatchedCausalAttention.Applies(dtype, device, t, 0);
        Tensor Forward() // as CausalSelfAttention
        {
            if (batched) return BatchedCausalAttention.Attend(qkv, s.Heads);
            using var inner = NewDisposeScope();
            var parts = qkv.split(h, dim: 2);
            Tensor Heads(Tensor z) => z.view(b, t, s.Heads, h / s.Heads).transpose(1, 2);
            return F.scaled_dot_product_attention(Heads(parts[0]), Heads(parts[1]), Heads(parts[2]), is_casual: true)
                .transpose(1, 2).contiguous().view(b, t, h).MoveToOuterDisposeScope();
        }
        double forward;
        using (no_grad())
            forward = Clock.Median(Clock.Repeat(Warmup, reps, () => { using var y = Forward(); Synchronize(device); }));
        double step = Clock.Median(Clock.Repeat(Warmup, reps, () =>
        {
            using (var y = Forward()) autograd.backward(new[] { y }, new[] { gradient });
            qkv.grad = null; // each rep stores its gradient afresh, as a step does
            Synchronize(device);
        }));
        return (forward, step);
    }

    private static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize();
    }
}
