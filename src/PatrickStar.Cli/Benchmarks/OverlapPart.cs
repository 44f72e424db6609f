using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Tiers;
using PatrickStar.Training;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Part `overlap` (not in the default set): does the disk tier's read-ahead and write-behind hide disk traffic behind
/// compute? In the folder of --disk-dir (default: the temp directory) it measures the disk's sequential bandwidth, trains
/// the model (the trainers part's sizes) with the chunk engine and no disk tier (compute), then with a disk tier under
/// budgets that put the optimizer state and some parameter chunks on disk, with disk_read_ahead on and then off. Each
/// run's step (median after the warm-up steps) is set against max(compute, disk bytes / bandwidth); the aim is 1.25x.
/// </summary>
/// <remarks>
/// Chunks are the size of the largest tensor unless --chunk-size; budgets: <see cref="Budgets"/>. The compute run has the
/// same device budget and an ample host one (nothing goes to disk).
/// </remarks>
public sealed class OverlapPart : IBenchPart
{
    public string Name => "overlap";

    public void Run(BenchContext context)
    {
        var s = context.Settings;
        string directory = s.OverlapDiskDir ?? Path.GetTempPath();
        var precision = s.Precision ?? TrainersPart.ChoosePrecision(context);
        var config = TrainersPart.Config(s, precision);
        var choice = GptRun.ResolveChoice(config);
        BenchContext.Progress($"overlap: GPT hidden {s.Hidden}, {s.Layers} layers, seq {s.Seq}, batch {s.Batch}, {precision.ToString().ToLowerInvariant()}, " +
                              $"{choice.ParameterCount / 1e6:N1}M parameters; {s.WarmupSteps} warm-up + {s.Steps} measured steps per run; disk tier in {directory}");

        long fileBytes = s.Quick ? 128L << 20 : 1L << 30;
        BenchContext.Progress($"  disk bandwidth: {Bytes.Format(fileBytes)} written and read in 8 MiB chunks...");
        var bandwidth = DiskTierBenchmark.Sequential(directory, DiskIoMode.Auto, fileBytes, 8L << 20);
        BenchContext.Progress($"  {(bandwidth.Direct ? "O_DIRECT" : "buffered")}: write {bandwidth.WriteBytesPerSecond / (1 << 20):N0} MiB/s, read {bandwidth.ReadBytesPerSecond / (1 << 20):N0} MiB/s");

        var data = GptRun.LoadData(config, Gpt2Tokenizer.Instance);
        // The finest layout (chunks the size of the largest tensor) unless --chunk-size: the most chunks to spread over the tiers.
        var layout = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(WithChunks(config, new ChunkSection { ChunkSize = s.ChunkSize }), choice, null, 0),
            suggestKnobs: false).Layout!;
        long chunkSize = s.ChunkSize ?? layout.Placements.Max(p => p.Numel);
        var (device, host) = Budgets(s, WithChunks(config, new ChunkSection { ChunkSize = chunkSize }), choice, precision);
        long available = MemoryMeter.AvailableHostMemory() ?? 0;
        long ample = Math.Max(available / 2, 4 * host); // a budget, not an allocation: what the model data needs is all it takes

        BenchContext.Progress($"  compute: device {Bytes.Format(device)}, host {Bytes.Format(ample)}, no disk tier...");
        var compute = Train(WithChunks(config, new ChunkSection { DeviceMemory = device, HostMemory = ample, ChunkSize = chunkSize }), data, s);
        var runs = new List<(OverlapFigures Figures, Measured Run)>();
        foreach (bool readAhead in new[] { true, false })
        {
            string label = readAhead ? "read-ahead on" : "read-ahead off";
            BenchContext.Progress($"  {label}: device {Bytes.Format(device)}, host {Bytes.Format(host)}, disk tier in {directory}...");
            var chunks = new ChunkSection { DeviceMemory = device, HostMemory = host, ChunkSize = chunkSize, DiskDir = directory, DiskReadAhead = readAhead };
            var run = Train(WithChunks(config, chunks), data, s);
            var figures = OverlapFigures.From(label, run.Steps, run.Disk, compute.Median, bandwidth.ReadBytesPerSecond, bandwidth.WriteBytesPerSecond);
            runs.Add((figures, run));
        }
        Report(context, s, choice.ParameterCount, bandwidth, compute, device, host, runs);
    }

    /// <summary>The measured steps of one run: seconds, disk figures, and what was on disk when training started.</summary>
    private sealed record Measured(List<double> Steps, List<DiskStatistics> Disk, long ChunkElements, int ChunkCount, KindBytes OnDiskAtStart)
    {
        public double Median => Measure.Median(Steps);
    }

    private static Measured Train(TrainingConfig config, TokenDataset data, BenchSettings s)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var run = GptRun.Create(config, data);
        var engine = (ChunkedEngine)run.Engine;
        var onDisk = engine.ChunkBytesIn(Tier.Disk);
        var steps = new List<double>();
        var disk = new List<DiskStatistics>();
        run.Trainer.StepCompleted += m =>
        {
            if (m.Step <= s.WarmupSteps) return;
            steps.Add(m.StepSeconds);
            if (m.EngineStatistics.Disk is { } d) disk.Add(d);
        };
        run.Trainer.Run();
        return new Measured(steps, disk, engine.Layout.ChunkSize, engine.ChunkCount, onDisk);
    }

    /// <summary>
    /// The budgets of the runs: the flags, or a device that holds ⌈half the parameter chunks⌉ beside what the estimator
    /// says the run needs there (the working set and the non-model peak), and a host that holds one chunk's four fp32
    /// lists (what packing needs) and one parameter chunk: the optimizer state and the other parameter chunks go to disk.
    /// </summary>
    internal static (long Device, long Host) Budgets(BenchSettings s, TrainingConfig config, PatrickStar.Models.ModelChoice choice, Precision precision)
    {
        long chunkElements = config.Chunks.ChunkSize!.Value;
        long paramChunk = chunkElements * PatrickStar.Runtime.TensorMemory.ElementSize(PlainEngine.ComputeType(precision));
        long host = s.HostMemory ?? 4 * chunkElements * 4 + paramChunk;
        if (s.DeviceMemory is long given) return (given, host);
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, choice, null, host), suggestKnobs: false);
        long need = estimate.Tiers.FirstOrDefault(t => t.Tier == "device")?.Needed ?? 0;
        return (need + (estimate.Layout!.ChunkCount + 1) / 2 * paramChunk, host);
    }

    private static TrainingConfig WithChunks(TrainingConfig c, ChunkSection chunks) => new()
    {
        Model = c.Model, MicroBatchSize = c.MicroBatchSize, SequenceLength = c.SequenceLength, Steps = c.Steps,
        Precision = c.Precision, Eval = c.Eval, Engine = "chunked", Chunks = chunks,
    };

    private static void Report(BenchContext context, BenchSettings s, long parameters, DiskBandwidth bandwidth, Measured compute, long device, long host,
        List<(OverlapFigures Figures, Measured Run)> runs)
    {
        var table = new ReportTable($"overlap: disk traffic behind compute ({(bandwidth.Direct ? "O_DIRECT" : "buffered")}), {parameters / 1e6:N1}M parameters, " +
                                    $"device {Bytes.Format(device)} + host {Bytes.Format(host)} + disk")
            .Column("run", right: false).Column("step s").Column("compute s").Column("disk read").Column("disk written").Column("I/O s at bandwidth")
            .Column("max(compute, I/O) s").Column("step / max").Column("serial / max").Column("I/O thread s").Column("waited s").Column("overlapped");
        foreach (var (f, _) in runs)
            table.Row(f.Label, $"{f.StepSeconds:0.000}", $"{f.ComputeSeconds:0.000}", Bytes.Format(f.BytesRead), Bytes.Format(f.BytesWritten), $"{f.IoSeconds:0.000}",
                      $"{f.Bound:0.000}", $"{f.Ratio:0.00}x", $"{f.SerialRatio:0.00}x", $"{f.EngineIoSeconds:0.000}", $"{f.WaitSeconds:0.000}", $"{f.OverlappedFraction * 100:0}%");
        var on = runs[0].Figures;
        table.Notes.Add($"aim: with read-ahead on, step / max(compute, I/O) <= {OverlapFigures.Aim:0.00}x; here {on.Ratio:0.00}x ({(on.Ratio <= OverlapFigures.Aim ? "met" : "not met")}), " +
                        $"read-ahead off {runs[1].Figures.Ratio:0.00}x. serial / max: the ratio if compute and I/O ran one after the other.");
        table.Notes.Add($"compute s: median step of the same model and device budget with a host budget that holds every chunk (no disk tier). I/O s at bandwidth: the step's disk bytes " +
                        $"over the sequential bandwidth measured in the same folder ({bandwidth.ReadBytesPerSecond / (1 << 20):N0} MiB/s read, {bandwidth.WriteBytesPerSecond / (1 << 20):N0} MiB/s write). " +
                        "I/O thread s, waited s, overlapped: the engine's own disk figures (waited: compute blocked on a read or a write; overlapped: 1 - waited / I/O thread s).");
        table.Notes.Add($"on disk at start: {string.Join(", ", DiskChunkKinds.Select(k => $"{k} {Bytes.Format(runs[0].Run.OnDiskAtStart[k])}"))}. " +
                        $"Medians of {s.Steps} steps after {s.WarmupSteps} warm-up steps; timings on a shared machine are noisy.");
        context.Report.Add("overlap", table);

        var json = new JsonObject
        {
            ["parameters"] = parameters, ["device_budget"] = device, ["host_budget"] = host, ["direct"] = bandwidth.Direct,
            ["read_bytes_per_second"] = bandwidth.ReadBytesPerSecond, ["write_bytes_per_second"] = bandwidth.WriteBytesPerSecond,
            ["compute_seconds"] = compute.Median, ["chunk_elements"] = compute.ChunkElements, ["chunks"] = compute.ChunkCount,
        };
        foreach (var (f, _) in runs)
            json[f.Label.Replace(' ', '_').Replace("-", "_")] = new JsonObject
            {
                ["step_seconds"] = f.StepSeconds, ["bytes_read"] = f.BytesRead, ["bytes_written"] = f.BytesWritten, ["io_seconds_at_bandwidth"] = f.IoSeconds,
                ["bound_seconds"] = f.Bound, ["ratio"] = f.Ratio, ["serial_ratio"] = f.SerialRatio, ["io_thread_seconds"] = f.EngineIoSeconds,
                ["wait_seconds"] = f.WaitSeconds, ["overlapped_fraction"] = f.OverlappedFraction,
            };
        context.Report.Json["overlap"] = json;
    }

    private static readonly ChunkKind[] DiskChunkKinds = [ChunkKind.Param, ChunkKind.Master, ChunkKind.Momentum, ChunkKind.Variance];
}
