using System.Text.Json.Nodes;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>
/// `pstar bench` run in-process at tiny sizes: the report files exist and hold the expected tables and keys.
/// No figure is checked against a speed: benchmarks are commands, never timed tests.
/// </summary>
public class BenchCliTests
{
    private static JsonObject ReadJson(string path) => JsonNode.Parse(File.ReadAllText(path))!.AsObject();

    /// <summary>`pstar bench` on a one-layer fp32 GPT of hidden 32 (seq 16, batch 1, no tight run), with 64³ matmuls.</summary>
    private static (int Code, string Out, string Err) TinyTrainersBench(string reportDir, params string[] extra) =>
        Pstar([.. new[] { "bench" }, .. extra, "--matmul-size", "64", "--tight-memory", "off", "--hidden", "32", "--layers", "1", "--heads", "2",
            "--seq", "16", "--batch", "1", "--precision", "fp32", "--report", reportDir]);

    [Fact]
    public void OptimizerPartWritesBothReportFiles()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        string extraJson = Path.Combine(dir.Path, "alias.json");
        var (code, output, err) = Pstar("bench", "--quick", "--parts", "optimizer", "--adam-elements", "4096", "--report", reportDir, "--json", extraJson);
        Assert.True(code == 0, err + output);

        string md = File.ReadAllText(Path.Combine(reportDir, "report.md"));
        foreach (var expected in new[] { "# pstar bench report", "- command: `pstar bench --quick --parts optimizer", "- date (UTC): ",
                     "logical processors, torch threads", "AVX-512 ", "## optimizer", "| implementation | median s | G elem/s | x torch | of bound |",
                     "torch.optim.AdamW", "fused kernel, bf16 grads -> bf16 params", "| triad a = b + s·c |" })
            Assert.Contains(expected, md);
        Assert.DoesNotContain("## trainers", md);

        var json = ReadJson(Path.Combine(reportDir, "report.json"));
        Assert.Equal("pstar-bench", (string?)json["format"]);
        Assert.Equal(1, (int)json["version"]!);
        Assert.Equal(new[] { "optimizer" }, json["parts"]!.AsArray().Select(p => (string)p!).ToArray());
        foreach (var key in new[] { "processor_count", "torch_threads", "cpu_model", "avx512", "fused_adam_kernel" })
            Assert.True(json["machine"]!.AsObject().ContainsKey(key), key);
        var optimizer = json["optimizer"]!.AsObject();
        Assert.Equal(4096, (long)optimizer["elements"]!);
        foreach (var key in new[] { "stream_copy_bytes_per_second", "stream_triad_bytes_per_second" })
            Assert.True((double)optimizer[key]! > 0, key);
        var bounds = optimizer["adam_traffic_bounds"]!.AsArray().Select(b => b!.AsObject()).ToArray();
        Assert.Equal(new[] { "Float32", "BFloat16" }, bounds.Select(b => (string)b["grad_type"]!).ToArray());
        foreach (var b in bounds)
            Assert.True((double)b["best_elements_per_second"]! >= (double)b["median_elements_per_second"]! && (int)b["bytes_per_element"]! == 28);
        var timings = optimizer["timings"]!.AsArray();
        Assert.Equal(4, timings.Count);
        foreach (var t in timings.Select(t => t!.AsObject()))
        {
            foreach (var key in new[] { "name", "median_seconds", "elements_per_second", "times_torch", "fraction_of_bound", "seconds" })
                Assert.True(t.ContainsKey(key), key);
            Assert.Equal(3, t["seconds"]!.AsArray().Count); // --quick: 3 timed repetitions
        }
        Assert.False(json.ContainsKey("trainers"));
        // --json writes the same report.
        Assert.Equal(File.ReadAllText(Path.Combine(reportDir, "report.json")), File.ReadAllText(extraJson));
    }

    [Fact]
    public void MatmulAndTrainersPartsReportEveryRun()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        var (code, output, err) = Pstar("bench", "--parts", "trainers,matmul", "--matmul-size", "64",
            "--hidden", "32", "--layers", "1", "--heads", "2", "--seq", "16", "--batch", "1", "--steps", "1", "--precision", "fp32", "--report", reportDir);
        Assert.True(code == 0, err + output);

        string md = File.ReadAllText(Path.Combine(reportDir, "report.md"));
        foreach (var expected in new[] { "## matmul", "## trainers", "trainers: speed", "trainers: traffic and memory per iteration",
                     "| plain |", "| chunked static (ample budget) |", "| chunked dynamic (ample budget) |", "chunked dynamic (tight budget)", "72·B·s·l·h²" })
            Assert.Contains(expected, md);
        // The matmul part runs first whatever the order given.
        Assert.True(md.IndexOf("## matmul", StringComparison.Ordinal) < md.IndexOf("## trainers", StringComparison.Ordinal));

        var json = ReadJson(Path.Combine(reportDir, "report.json"));
        Assert.Equal(new[] { "matmul", "trainers" }, json["parts"]!.AsArray().Select(p => (string)p!).ToArray());
        Assert.Equal(64, (int)json["matmul"]!["fp32"]!["n"]!);
        var trainers = json["trainers"]!.AsObject();
        Assert.Equal("fp32", (string?)trainers["model"]!["precision"]);
        Assert.NotNull(trainers["model"]!["flops_formula"]);
        Assert.True((long)trainers["tight_budget_bytes"]! > 0);
        var runs = trainers["runs"]!.AsArray().Select(r => r!.AsObject()).ToList();
        Assert.Equal(new[] { "plain", "chunked static (ample budget)", "chunked dynamic (ample budget)", "chunked dynamic (tight budget)" },
            runs.Select(r => (string)r["label"]!).ToArray());
        foreach (var run in runs.Where(r => r["error"] is null))
        {
            foreach (var key in new[] { "median_step_seconds", "step_time_vs_plain", "tokens_per_second", "tflops", "fraction_of_matmul_peak",
                         "loss_first", "loss_last", "peak_device_bytes", "step_seconds_all", "step_seconds_measured" })
                Assert.True(run[key] is not null, $"{run["label"]}: {key}");
            Assert.Equal(3, run["step_seconds_all"]!.AsArray().Count); // 2 warm-up + 1 measured
        }
        // Same model, seed and data: the engines start from the same loss.
        double plainLoss = (double)runs[0]["loss_first"]!;
        foreach (var run in runs.Skip(1).Where(r => r["error"] is null))
            Assert.Equal(plainLoss, (double)run["loss_first"]!, 3);
        // The ample chunked runs report the engine's traffic; nothing needs to move when every chunk fits.
        var ample = runs[2];
        Assert.Equal(0, (double)ample["evictions_per_iteration"]!);
        Assert.NotNull(ample["peak_device_model_bytes"]);
        Assert.NotNull(ample["peak_host_bytes"]);
        Assert.Single(ample["engine_statistics_per_measured_step"]!.AsArray());
    }

    [Fact]
    public void CeilingPartTimesEveryProductAndSetsTheTrainersAgainstThem()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        var (code, output, err) = TinyTrainersBench(reportDir, "--parts", "ceiling,trainers,matmul", "--steps", "1");
        Assert.True(code == 0, err + output);
        var json = ReadJson(Path.Combine(reportDir, "report.json"));
        Assert.Equal(new[] { "matmul", "trainers", "ceiling" }, json["parts"]!.AsArray().Select(p => (string)p!).ToArray());
        var ceiling = json["ceiling"]!.AsObject();
        Assert.Equal("fp32", (string?)ceiling["dtype"]);
        Assert.Equal((double)ceiling["model_flops_per_step"]!, (double)ceiling["gemm_flops_per_step"]!, 6);
        Assert.Equal(21, ceiling["gemms"]!.AsArray().Count);
        foreach (var key in new[] { "gemm_seconds_per_step", "gemm_only_fraction_of_matmul_peak", "sdpa_forward_backward_seconds_per_layer", "ceiling_step_seconds_with_sdpa" })
            Assert.True((double)ceiling[key]! > 0, key);
        var trainers = ceiling["trainers"]!.AsArray();
        Assert.Equal(3, trainers.Count); // plain, static, dynamic (no tight run)
        Assert.True((double)trainers[0]!["x_gemm_seconds"]! > 0);
        Assert.Contains("ceiling: one step's matrix products alone in libtorch", File.ReadAllText(Path.Combine(reportDir, "report.md")));
    }

    [Fact]
    public void RoundsRepeatTheRunsAndTakeEachRatioPerRound()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        var (code, output, err) = TinyTrainersBench(reportDir, "--parts", "trainers", "--rounds", "3", "--steps", "2");
        Assert.True(code == 0, err + output);
        Assert.Contains("round 3 of 3", output + err);
        var trainers = ReadJson(Path.Combine(reportDir, "report.json"))["trainers"]!.AsObject();
        Assert.Equal(3, (int)trainers["rounds"]!);
        var runs = trainers["runs"]!.AsArray().Select(r => r!.AsObject()).ToList();
        Assert.Equal(3, runs.Count); // plain, static, dynamic
        // A matmul probe before each of the 3 runs of each round and one after the last: the peak beside the runs is their median.
        var probes = trainers["peak_probes_gflops"]!.AsArray().Select(v => (double)v!).Order().ToArray();
        Assert.Equal(3 * 3 + 1, probes.Length);
        double median = (probes[4] + probes[5]) / 2; // ten probes
        Assert.Equal(median, (double)trainers["peak_beside_runs_gflops"]!, 9);
        double flops = (double)trainers["model"]!["flops_per_step"]!;
        foreach (var run in runs)
            Assert.Equal(flops / (double)run["median_step_seconds"]! / 1e9 / median, (double)run["fraction_of_peak_beside_runs"]!, 9);
        // Per round, each run against the probes on either side of it: in probe order (not sorted), run k of round r follows probe 3r + k.
        var inOrder = trainers["peak_probes_gflops"]!.AsArray().Select(v => (double)v!).ToArray();
        for (int k = 0; k < runs.Count; k++)
        {
            var indices = runs[k]["round_probe_indices"]!.AsArray().Select(v => (int)v!).ToArray();
            Assert.Equal(new[] { k, 3 + k, 6 + k }, indices);
            var roundSeconds = runs[k]["round_median_step_seconds"]!.AsArray().Select(v => (double)v!).ToArray();
            var perRound = runs[k]["fraction_of_probes_beside_run_per_round"]!.AsArray().Select(v => (double)v!).ToArray();
            for (int r = 0; r < 3; r++)
                Assert.Equal(flops / roundSeconds[r] / 1e9 / Math.Max(inOrder[indices[r]], inOrder[indices[r] + 1]), perRound[r], 9);
            Assert.Equal(perRound.Order().ElementAt(1), (double)runs[k]["fraction_of_probes_beside_run"]!, 12);
        }
        double[] Rounds(JsonObject run) => run["round_median_step_seconds"]!.AsArray().Select(v => (double)v!).ToArray();
        var plain = Rounds(runs[0]);
        foreach (var run in runs)
        {
            Assert.Equal(6, run["step_seconds_measured"]!.AsArray().Count); // 2 measured steps x 3 rounds, pooled
            var mine = Rounds(run);
            Assert.Equal(3, mine.Length);
            var ratios = mine.Zip(plain, (a, b) => a / b).Order().ToArray();
            Assert.Equal(ratios[1], (double)run["step_time_vs_plain"]!, 12); // the median of the three rounds' ratios
        }
    }

    [Fact]
    public void RatioToPlainIsTheMedianOfTheRoundsRatios()
    {
        Assert.Equal(1.5, PatrickStar.Cli.Benchmarks.TrainersPart.RatioToPlain([3.0, 1.0, 2.2], [2.0, 1.0, 1.0]), 12); // ratios 1.5, 1.0, 2.2 (the medians alone: 2.2)
        Assert.Equal(1.0, PatrickStar.Cli.Benchmarks.TrainersPart.RatioToPlain([1.0], [1.0]), 12);
    }

    [Fact]
    public void MfuPerRoundUsesTheProbesOnEitherSideOfTheRun()
    {
        // Probes 100, 300, 200 GFLOPS; a run after probe 0 (round 1, 1 s) and one after probe 1 (round 2, 2 s); 1e11 FLOPs per step.
        // Each against the faster probe beside it: 300 both times (the later one for the first run, the earlier for the second).
        var mfu = PatrickStar.Cli.Benchmarks.TrainersPart.MfuPerRound(1e11, [1.0, 2.0], [0, 1], [100.0, 300.0, 200.0]);
        Assert.Equal(100.0 / 300, mfu[0], 12);
        Assert.Equal(50.0 / 300, mfu[1], 12);
    }

    [Fact]
    public void UnknownPartIsRefused()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        var (code, _, err) = Pstar("bench", "--parts", "matmul,warp", "--report", reportDir);
        Assert.Equal(1, code);
        Assert.Contains("unknown bench part 'warp'", err);
        Assert.False(Directory.Exists(reportDir), "nothing may be written for a refused run");
    }

    [Fact]
    public void ScaleAliasConflictsWithParts()
    {
        var (code, _, err) = Pstar("bench", "--scale", "--parts", "optimizer");
        Assert.Equal(1, code);
        Assert.Contains("--scale is --parts scale", err);
    }
}
