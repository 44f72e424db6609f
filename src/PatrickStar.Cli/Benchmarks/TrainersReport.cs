using System.Text.Json.Nodes;
using PatrickStar.Config;
using PatrickStar.Models;
using PatrickStar.Profiling;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>The trainers part's tables and JSON: speed, the step breakdown, traffic and memory, per run.</summary>
public sealed partial class TrainersPart
{
    private void Report(BenchContext context, BenchSettings s, ModelChoice choice, Precision precision, double flops, MatmulResult? peak,
        List<RunResult> runs, long? tight, List<double> probes)
    {
        double besidePeak = PatrickStar.Benchmarks.Measure.Median(probes);
        var plain = runs[0];
        string dtype = PrecisionNames.Name(precision);
        long tokens = (long)s.Batch * s.Seq;

        var speed = new ReportTable($"trainers: speed ({choice.ParameterCount / 1e6:N1}M parameters, {dtype}, batch {s.Batch} × seq {s.Seq})")
            .Column("run", right: false).Column("device budget").Column("chunks").Column("s/iter").Column("x plain").Column("tokens/s").Column("TFLOPS")
            .Column($"of {dtype} matmul peak").Column("of peak beside the runs").Column("of probes beside each run").Column("loss first → last");
        var memory = new ReportTable("trainers: traffic and memory per iteration")
            .Column("run", right: false).Column("device<-host").Column("host<-device").Column("chunk moves").Column("evictions")
            .Column("peak device (model + non-model)").Column("x plain").Column("peak host").Column("Adam chunks on device");
        foreach (var r in runs)
        {
            string budget = r.DeviceBudget is long b ? Bytes.Format(b) : "-";
            if (r.Error is not null)
            {
                speed.Row(r.Label, budget, "-", "does not fit", "-", "-", "-", "-", "-", "-", "-");
                memory.Row(r.Label, "-", "-", "-", "-", "-", "-", "-", "-");
                continue;
            }
            double median = r.Median;
            string chunks = r.Chunks is int n ? $"{n} × {Bytes.Format(r.ChunkElements!.Value * PatrickStar.Runtime.TensorMemory.ElementSize(PatrickStar.Training.PlainEngine.ComputeType(precision)))}" : "-";
            speed.Row(r.Label, budget, chunks, $"{median:0.000}", $"{RatioToPlain(r.RoundMedians, plain.RoundMedians):0.00}x", $"{tokens / median:N0}", $"{flops / median / 1e12:0.0000}",
                peak is null ? "-" : $"{flops / median / 1e9 / peak.Gflops * 100:0.0}%", $"{flops / median / 1e9 / besidePeak * 100:0.0}%",
                RoundMfuText(MfuPerRound(flops, r.RoundMedians, r.RoundProbes, probes)),
                $"{r.FirstLoss:0.000} → {r.LastLoss:0.000}");
            string peakDevice = r.PeakDeviceModel is long model && r.PeakDeviceNonModel is long nonModel
                ? $"{Bytes.Format(r.PeakDevice)} ({Bytes.Format(model)} + {Bytes.Format(nonModel)})"
                : $"{Bytes.Format(r.PeakDevice)} (measured)";
            string host = r.Engine == "plain"
                ? context.Device.type == DeviceType.CPU ? "= device (one memory)" : "-"
                : Bytes.Format(r.PeakHost ?? 0);
            memory.Row(r.Label, Traffic(r.Stat(i => i.BytesToDevice)), Traffic(r.Stat(i => i.BytesToHost)), Count(r.Stat(i => i.ChunkMoves)), Count(r.Stat(i => i.Evictions)),
                peakDevice, plain.PeakDevice > 0 ? $"{(double)r.PeakDevice / plain.PeakDevice:0.00}x" : "-", host, Count(r.Stat(i => i.OptimizerChunksOnDevice)));
        }
        speed.Notes.Add($"s/iter: median of {s.Steps} steps after {s.WarmupSteps} warm-up steps (the chunk engine's first step is its tracing warm-up)" +
                        (s.Rounds > 1 ? $", over {s.Rounds} rounds of the runs one after another; x plain: the median of the rounds' ratios. " : ". ") +
                        $"TFLOPS: model FLOPs {BenchModel.FlopsFormula(choice)} = {flops / 1e12:0.000} TFLOP per step, divided by s/iter.");
        speed.Notes.Add($"of peak beside the runs: against the median ({besidePeak:N1} GFLOPS) of {probes.Count} {dtype} matmul probes " +
                        $"(3 products of the matmul part's size) taken before each run and after the last, so that the peak and the steps share the machine's speed of the moment.");
        speed.Notes.Add("of probes beside each run: per round, the run's median step against the faster of the probes just before and just after it; " +
                        "the median over rounds (each round's in brackets when there are several), so that a run is judged at the speed of its own minutes.");
        speed.Notes.Add(s.DeviceMemory is null
            ? "ample budget: half the machine's available memory, every chunk fits: the chunk engine's pure overhead over the plain trainer."
            : "given budget: --device-memory.");
        if (tight is long t)
            speed.Notes.Add(s.TightMemory is null
                ? $"tight budget {Bytes.Format(t)}: half the parameter chunks (rounded up, two at least) + the non-model peak of the dynamic run + 10% " +
                  "(or the estimator's device need, when higher: below it the run is refused before it starts), in chunks the size of the largest tensor, " +
                  "so that chunks are evicted and fetched every iteration."
                : $"tight budget {Bytes.Format(t)}: --tight-memory.");
        if (tight is not null && runs[^1] is { Error: null, Chunks: <= 2 } tightRun)
            speed.Notes.Add($"{tightRun.Label}: the layout has only {tightRun.Chunks} chunk(s), all in one module's working set at some moment, so nothing can be evicted; " +
                            "more layers give more chunks.");
        foreach (var r in runs.Where(r => r.Error is not null)) speed.Notes.Add($"{r.Label}: {r.Error}");
        memory.Notes.Add("Traffic and chunk counts: medians over the measured iterations of the engine's per-iteration statistics. " +
                         "Peak device: for the chunk engine its accounting (chunk bytes on the device + the non-model bytes it measured) in the last iteration; " +
                         "for plain, the process's native in-use peak (glibc, sampled in the background during the warm-up steps) minus the reading before the model was built. " +
                         "Peak host: the host tier's peak bytes in use (chunk buffers).");
        if (plain.Engine == "plain" && context.Device.type == DeviceType.CPU)
            memory.Notes.Add("On a CPU device the plain trainer's device and host are the same memory: its one measured peak is in the device column.");
        context.Report.Add(Name, speed);
        context.TrainerSteps.AddRange(runs.Where(r => r.Error is null).Select(r => (r.Label, r.Median)));
        context.Report.Add(Name, StepBreakdown.Table(runs.Where(r => r.Error is null).Select(r => (r.Label, r.MeasuredPhases, r.MeasuredSeconds, r.MeasuredCounters)),
            flops, context.Bf16Matmul, context.Fp32Matmul));
        context.Report.Add(Name, memory);

        context.Report.Json[Name] = new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["family"] = choice.Family, ["hidden"] = s.Hidden, ["layers"] = s.Layers, ["heads"] = s.Heads, ["kv_heads"] = choice.Llama?.KvHeads,
                ["intermediate"] = choice.Llama?.Intermediate, ["seq"] = s.Seq, ["batch"] = s.Batch, ["vocab"] = choice.Sizes.VocabSize, ["parameters"] = choice.ParameterCount,
                ["precision"] = dtype, ["precision_chosen_automatically"] = s.Precision is null,
                ["flops_per_step"] = flops, ["flops_formula"] = BenchModel.FlopsFormula(choice),
            },
            ["warmup_steps"] = s.WarmupSteps,
            ["measured_steps"] = s.Steps,
            ["rounds"] = s.Rounds,
            ["matmul_peak_gflops"] = peak?.Gflops,
            ["peak_probes_gflops"] = BenchReport.Array(probes),
            ["peak_beside_runs_gflops"] = besidePeak,
            ["bf16_matmul_gflops"] = context.Bf16Matmul?.Gflops,
            ["fp32_matmul_gflops"] = context.Fp32Matmul?.Gflops,
            ["tight_budget_bytes"] = tight,
            ["tight_budget_automatic"] = tight is not null && s.TightMemory is null,
            ["runs"] = new JsonArray(runs.Select(r => (JsonNode)Json(r, plain, flops, tokens, peak, besidePeak, probes)).ToArray()),
        };
    }

    private static JsonObject Json(RunResult r, RunResult plain, double flops, long tokens, MatmulResult? peak, double besidePeak, List<double> probes)
    {
        var o = new JsonObject
        {
            ["label"] = r.Label,
            ["engine"] = r.Engine,
            ["placement"] = r.Placement,
            ["device_budget_bytes"] = r.DeviceBudget,
            ["host_budget_bytes"] = r.HostBudget,
            ["error"] = r.Error,
        };
        if (r.Error is not null) return o;
        double median = r.Median;
        o["step_seconds_all"] = BenchReport.Array(r.AllSeconds);
        o["step_seconds_measured"] = BenchReport.Array(r.MeasuredSeconds);
        o["median_step_seconds"] = median;
        o["step_time_vs_plain"] = RatioToPlain(r.RoundMedians, plain.RoundMedians);
        o["round_median_step_seconds"] = BenchReport.Array(r.RoundMedians);
        o["tokens_per_second"] = tokens / median;
        o["tflops"] = flops / median / 1e12;
        o["fraction_of_matmul_peak"] = peak is null ? null : flops / median / 1e9 / peak.Gflops;
        o["fraction_of_peak_beside_runs"] = flops / median / 1e9 / besidePeak;
        var perRound = MfuPerRound(flops, r.RoundMedians, r.RoundProbes, probes);
        o["fraction_of_probes_beside_run_per_round"] = BenchReport.Array(perRound);
        o["fraction_of_probes_beside_run"] = PatrickStar.Benchmarks.Measure.Median(perRound);
        o["round_probe_indices"] = new JsonArray(r.RoundProbes.Select(i => (JsonNode)i).ToArray());
        o["phase_seconds_median"] = StepBreakdown.Json(r.MeasuredPhases, r.MeasuredSeconds);
        o["process_counters_per_step_median"] = StepBreakdown.CountersJson(r.MeasuredCounters);
        o["loss_first"] = r.FirstLoss;
        o["loss_last"] = r.LastLoss;
        o["bytes_to_device_per_iteration"] = r.Stat(i => i.BytesToDevice);
        o["bytes_to_host_per_iteration"] = r.Stat(i => i.BytesToHost);
        o["chunk_moves_per_iteration"] = r.Stat(i => i.ChunkMoves);
        o["evictions_per_iteration"] = r.Stat(i => i.Evictions);
        o["optimizer_chunks_on_device"] = r.Stat(i => i.OptimizerChunksOnDevice);
        o["peak_device_bytes"] = r.PeakDevice;
        o["peak_device_measured"] = r.Engine == "plain";
        o["peak_device_model_bytes"] = r.PeakDeviceModel;
        o["peak_device_non_model_bytes"] = r.PeakDeviceNonModel;
        o["peak_device_vs_plain"] = plain.PeakDevice > 0 ? (double)r.PeakDevice / plain.PeakDevice : null;
        o["peak_host_bytes"] = r.PeakHost;
        o["device_tier_peak_in_use_bytes"] = r.DeviceTierPeakInUse;
        o["parameter_chunks"] = r.Chunks;
        o["chunk_elements"] = r.ChunkElements;
        o["engine_statistics_per_measured_step"] = new JsonArray(r.MeasuredStatistics.Select(d =>
            (JsonNode)new JsonObject(d.Named().Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)))).ToArray());
        return o;
    }

    private static string RoundMfuText(List<double> perRound) =>
        $"{PatrickStar.Benchmarks.Measure.Median(perRound) * 100:0.0}%" +
        (perRound.Count > 1 ? $" ({string.Join(", ", perRound.Select(f => $"{f * 100:0.0}"))})" : "");

    private static string Traffic(double? bytes) => bytes is double b ? Bytes.Format(b) : "-";
    private static string Count(double? n) => n is double v ? $"{v:0.#}" : "-";
}
