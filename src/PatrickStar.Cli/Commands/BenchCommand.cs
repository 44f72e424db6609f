using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using Spectre.Console;
using TorchSharp;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// `pstar bench`: side-by-side figures from one process and one sitting: the device's bf16 matmul peak
/// and what the plain trainer achieves on a mid-size GPT, as a ratio.
/// </summary>
public static class BenchCommand
{
    public static Command Build()
    {
        var quick = new Option<bool>("--quick") { Description = "Fewer repetitions and a smaller model: finishes in about a minute." };
        var hidden = new Option<int?>("--hidden") { Description = "Hidden size of the benchmark GPT (default 1024)." };
        var layers = new Option<int?>("--layers") { Description = "Transformer blocks of the benchmark GPT (default 8)." };
        var heads = new Option<int?>("--heads") { Description = "Attention heads (default 16)." };
        var seq = new Option<int?>("--seq") { Description = "Sequence length, also the model's context (default 512)." };
        var batch = new Option<int?>("--batch") { Description = "Micro-batch size (default 8)." };
        var steps = new Option<int?>("--steps") { Description = "Measured training steps after warm-up (default 5)." };
        var precision = new Option<string>("--precision")
        {
            Description = "Trainer precision: fp32, bf16, or auto (default: the one whose matmul peak is higher on this device).",
            DefaultValueFactory = _ => "auto",
        };
        precision.AcceptOnlyFromAmong("auto", "fp32", "bf16");
        var json = new Option<FileInfo?>("--json") { Description = "Write every figure to this JSON report." };
        var scale = new Option<bool>("--scale") { Description = "Instead: the largest GPT the plain trainer, static and dynamic placement each train under --device-memory / --host-memory." };
        var deviceMemory = new Option<string>("--device-memory") { Description = "Device budget for --scale (default 1GiB).", DefaultValueFactory = _ => "1GiB" };
        var hostMemory = new Option<string>("--host-memory") { Description = "Host budget for --scale (default 16GiB).", DefaultValueFactory = _ => "16GiB" };

        var command = new Command("bench",
            "Measure the compute device's bf16 matmul peak (2048^3), the plain trainer's achieved model TFLOPS on a mid-size GPT and the chunk engine's step time next to it " +
            $"in the same run, and their ratio. Model FLOPs: {GptConfig.FlopsFormula}. Medians after warm-up.");
        foreach (var o in new Option[] { quick, hidden, layers, heads, seq, batch, steps, precision, json, scale, deviceMemory, hostMemory }) command.Options.Add(o);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            bool q = r.GetValue(quick);
            if (r.GetValue(scale))
                return RunScale(ByteSize.Parse(r.GetValue(deviceMemory)!, "--device-memory"), ByteSize.Parse(r.GetValue(hostMemory)!, "--host-memory"),
                    r.GetValue(hidden) ?? 1024, r.GetValue(heads) ?? 16, r.GetValue(json)?.FullName);
            var settings = new TrainerBenchSettings(
                r.GetValue(hidden) ?? (q ? 512 : 1024), r.GetValue(layers) ?? (q ? 4 : 8), r.GetValue(heads) ?? (q ? 8 : 16),
                r.GetValue(seq) ?? (q ? 256 : 512), r.GetValue(batch) ?? (q ? 4 : 2), r.GetValue(steps) ?? (q ? 3 : 5), Warmup: 2,
                r.GetValue(precision) switch { "fp32" => Precision.Fp32, "bf16" => Precision.Bf16, _ => null });
            return Run(settings, q ? 5 : 9, r.GetValue(json)?.FullName, q);
        }));
        return command;
    }

    private static int RunScale(long device, long host, int hidden, int heads, string? jsonPath)
    {
        TorchRuntime.EnsureLoaded();
        AnsiConsole.MarkupLine($"[grey]largest GPT (hidden {hidden}, layers searched) per engine under {Bytes.Format(device)} device / {Bytes.Format(host)} host...[/]");
        var outcomes = ScaleBenchmark.Run(device, host, hidden, heads, seq: 64, maxLayers: 512);
        long limit = (device + host) / 14;
        var table = new Table().Border(TableBorder.Rounded).Title("pstar bench --scale");
        foreach (var c in new[] { "engine", "layers", "parameters", "of (device+host)/14", "vs static" }) table.AddColumn(c);
        long staticParams = outcomes.First(o => o.Policy == "static").Parameters;
        foreach (var o in outcomes)
            table.AddRow(o.Policy, $"{o.Layers}", $"{o.Parameters:N0}", $"{(double)o.Parameters / limit:P1}",
                staticParams > 0 ? $"{(double)o.Parameters / staticParams:0.00}x" : "-");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"[grey]memory limit (device + host) / 14 B = {limit:N0} parameters[/]");
        if (jsonPath is not null)
        {
            var report = new JsonObject
            {
                ["device_bytes"] = device, ["host_bytes"] = host, ["hidden"] = hidden, ["limit_parameters"] = limit,
                ["results"] = new JsonArray(outcomes.Select(o => (JsonNode)new JsonObject { ["engine"] = o.Policy, ["layers"] = o.Layers, ["parameters"] = o.Parameters }).ToArray()),
            };
            File.WriteAllText(jsonPath, report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        return 0;
    }

    private sealed record TrainerMeasurement(string Engine, List<double> StepSeconds, double Median, double FirstLoss, double LastLoss,
        IReadOnlyDictionary<string, double> Statistics);

    private static TrainerMeasurement MeasureTrainer(TrainingConfig config, TrainerBenchSettings s, string label)
    {
        AnsiConsole.MarkupLine($"[grey]{label}: GPT hidden {s.Hidden}, {s.Layers} layers, seq {s.Seq}, batch {s.Batch}, {config.Precision}: " +
                               $"{s.Warmup} warm-up + {s.Steps} measured steps...[/]");
        using var run = GptRun.Create(config);
        var times = new List<double>();
        IReadOnlyDictionary<string, double> stats = new Dictionary<string, double>();
        run.Trainer.StepCompleted += m =>
        {
            if (m.Step > s.Warmup) times.Add(m.StepSeconds);
            stats = m.EngineStatistics;
        };
        var summary = run.Trainer.Run();
        return new TrainerMeasurement(config.Engine, times, Measure.Median(times), summary.FirstLoss, summary.LastLoss, stats);
    }

    private static TrainingConfig CloneWithEngine(TrainingConfig c, string engine) => new()
    {
        Model = c.Model, MicroBatchSize = c.MicroBatchSize, SequenceLength = c.SequenceLength, Steps = c.Steps,
        Precision = c.Precision, Eval = c.Eval, Engine = engine,
    };

    private sealed record TrainerBenchSettings(int Hidden, int Layers, int Heads, int Seq, int Batch, int Steps, int Warmup, Precision? Precision);

    private static int Run(TrainerBenchSettings s, int matmulReps, string? jsonPath, bool quickMode)
    {
        TorchRuntime.EnsureLoaded();
        var device = TorchRuntime.ResolveDevice("auto");
        var report = new JsonObject
        {
            ["device"] = device.ToString(),
            ["torch_threads"] = torch.get_num_threads(),
            ["processor_count"] = Environment.ProcessorCount,
            ["date_utc"] = DateTime.UtcNow.ToString("O"),
        };

        AnsiConsole.MarkupLine("[grey]matmul peak, 2048^3 where the device is fast enough (bf16, then fp32)...[/]");
        var (bf16, bf16N, bf16Times) = MatmulPeak.Run(device, torch.ScalarType.BFloat16, reps: matmulReps);
        var (fp32, fp32N, fp32Times) = MatmulPeak.Run(device, torch.ScalarType.Float32, reps: matmulReps);
        var precision = s.Precision ?? (bf16 >= fp32 ? Precision.Bf16 : Precision.Fp32);
        if (s.Precision is null)
            AnsiConsole.MarkupLine($"[grey]auto precision: {precision} (bf16 {bf16:N1} vs fp32 {fp32:N1} GFLOPS on this device)[/]");
        report["matmul"] = new JsonObject
        {
            ["bf16_n"] = bf16N,
            ["fp32_n"] = fp32N,
            ["bf16_gflops"] = bf16,
            ["fp32_gflops"] = fp32,
            ["bf16_seconds"] = new JsonArray(bf16Times.Select(t => (JsonNode)t).ToArray()),
            ["fp32_seconds"] = new JsonArray(fp32Times.Select(t => (JsonNode)t).ToArray()),
        };

        var config = new TrainingConfig
        {
            Model = new ModelSection { Preset = null, VocabSize = GptConfig.Gpt2VocabSize, ContextLength = s.Seq, Layers = s.Layers, Hidden = s.Hidden, Heads = s.Heads, Dropout = 0 },
            MicroBatchSize = s.Batch,
            SequenceLength = s.Seq,
            Steps = s.Warmup + s.Steps,
            Precision = precision,
            Eval = new EvalSection { Interval = 0 },
        };
        var gpt = GptRun.ResolveModel(config);
        double flops = gpt.TrainingFlops(s.Batch, s.Seq);
        double peak = precision == Precision.Bf16 ? bf16 : fp32;

        // The plain trainer and the chunk engine (room for every chunk on the device: its pure overhead), same model and data.
        var plain = MeasureTrainer(config, s, "plain");
        var chunkedConfig = CloneWithEngine(config, "chunked");
        var chunked = MeasureTrainer(chunkedConfig, s, "chunk engine");
        AnsiConsole.MarkupLine("[grey]optimizer step: torch.optim.AdamW, tensor ops and the fused kernel on the same parameters...[/]");
        long adamElements = quickMode ? 16L << 20 : 128L << 20;
        var adamReport = OptimizerBenchmark.Run(adamElements);
        var adamTimings = adamReport.Timings;
        var memory = MemoryMeter.Snapshot();

        JsonObject Describe(TrainerMeasurement m) => new()
        {
            ["engine"] = m.Engine,
            ["step_seconds"] = new JsonArray(m.StepSeconds.Select(t => (JsonNode)t).ToArray()),
            ["median_step_seconds"] = m.Median,
            ["tokens_per_second"] = s.Batch * s.Seq / m.Median,
            ["tflops"] = flops / m.Median / 1e12,
            ["loss_first"] = m.FirstLoss,
            ["loss_last"] = m.LastLoss,
            ["engine_statistics"] = new JsonObject(m.Statistics.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
        };
        report["model"] = new JsonObject
        {
            ["hidden"] = s.Hidden, ["layers"] = s.Layers, ["heads"] = s.Heads, ["seq"] = s.Seq, ["batch"] = s.Batch,
            ["precision"] = precision.ToString().ToLowerInvariant(),
            ["precision_chosen_automatically"] = s.Precision is null,
            ["parameters"] = gpt.ParameterCount,
            ["flops_per_step"] = flops,
            ["flops_formula"] = GptConfig.FlopsFormula,
        };
        report["plain_trainer"] = Describe(plain);
        report["chunked_engine"] = Describe(chunked);
        double ratio = flops / plain.Median / 1e9 / peak;
        report["trainer_to_matmul_peak_ratio"] = ratio;
        report["chunked_to_plain_step_time_ratio"] = chunked.Median / plain.Median;
        report["optimizer"] = new JsonObject
        {
            ["elements"] = adamElements,
            ["stream_copy_bytes_per_second"] = adamReport.Bandwidth.CopyBytesPerSecond,
            ["stream_triad_bytes_per_second"] = adamReport.Bandwidth.TriadBytesPerSecond,
            ["bytes_per_element_moved_by_adam"] = OptimizerReport.BytesPerElement,
            ["bandwidth_bound_elements_per_second"] = adamReport.BoundElementsPerSecond,
            ["timings"] = new JsonArray(adamTimings.Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name, ["median_seconds"] = t.MedianSeconds, ["elements_per_second"] = t.ElementsPerSecond,
                ["seconds"] = new JsonArray(t.Seconds.Select(x => (JsonNode)x).ToArray()),
            }).ToArray()),
        };
        report["peak_rss_bytes"] = memory.PeakResident;

        var table = new Table().Border(TableBorder.Rounded).Title("pstar bench");
        table.AddColumn("figure");
        table.AddColumn(new TableColumn("value").RightAligned());
        table.AddRow($"matmul {bf16N}^3 bf16 (median)", $"{bf16:N1} GFLOPS" + (bf16N < 2048 ? " (2048^3 too slow here)" : ""));
        table.AddRow($"matmul {fp32N}^3 fp32 (median)", $"{fp32:N1} GFLOPS" + (fp32N < 2048 ? " (2048^3 too slow here)" : ""));
        table.AddRow($"plain trainer, {gpt.ParameterCount / 1e6:N0}M params, {precision}", $"{flops / plain.Median / 1e9:N0} GFLOPS (model), {plain.Median:0.000} s/step");
        table.AddRow($"trainer / {(precision == Precision.Bf16 ? "bf16" : "fp32")} matmul peak", $"{ratio:P1}");
        table.AddRow("chunk engine (all chunks fit)", $"{flops / chunked.Median / 1e9:N0} GFLOPS (model), {chunked.Median:0.000} s/step");
        table.AddRow("chunk engine / plain step time", $"{chunked.Median / plain.Median:0.000}");
        foreach (var t in adamTimings)
            table.AddRow($"Adam step, {adamElements / 1e6:N0}M fp32: {CommandErrors.Esc(t.Name)}",
                $"{t.ElementsPerSecond / 1e9:0.000} G elem/s ({t.ElementsPerSecond / adamTimings[0].ElementsPerSecond:0.0}x torch)");
        table.AddRow("memory bandwidth, STREAM copy / triad (read + write)",
            $"{adamReport.Bandwidth.CopyBytesPerSecond / (1L << 30):0.0} / {adamReport.Bandwidth.TriadBytesPerSecond / (1L << 30):0.0} GiB/s");
        table.AddRow($"Adam bandwidth bound (triad / {OptimizerReport.BytesPerElement} B per element)", $"{adamReport.BoundElementsPerSecond / 1e9:0.000} G elem/s");
        foreach (var t in adamTimings.Skip(2))
            table.AddRow($"{CommandErrors.Esc(t.Name)} / bound", $"{t.ElementsPerSecond / adamReport.BoundElementsPerSecond:P0}");
        table.AddRow("peak resident memory", Bytes.Format(memory.PeakResident));
        AnsiConsole.Write(table);

        if (jsonPath is not null)
        {
            File.WriteAllText(jsonPath, report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            AnsiConsole.MarkupLine($"Report written to {CommandErrors.Esc(jsonPath)}");
        }
        return 0;
    }
}
