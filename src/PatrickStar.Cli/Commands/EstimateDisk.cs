using System.CommandLine;
using System.Globalization;
using PatrickStar.Benchmarks;
using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Profiling;
using PatrickStar.Tiers;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// The disk tier in `pstar estimate`: disk_dir / disk_memory come from the config and its flags (--disk-dir, --disk-memory,
/// as for `pstar train`); --disk-bandwidth, --step-seconds and --tflops are the estimate's own. The disk tier's need,
/// bandwidth (given, or measured by writing and reading a few chunks in disk_dir) and predicted step time.
/// </summary>
public sealed class EstimateDisk
{
    private readonly Option<string?> _bandwidth = new("--disk-bandwidth") { Description = "Sequential disk bandwidth for reads and writes: MB/s (\"1500\") or a size per second (\"1.5GB/s\", \"800MiB/s\")." };
    private readonly Option<double?> _stepSeconds = new("--step-seconds") { Description = "A step's time without disk traffic (the median step of a run that fits in memory), for the predicted step time." };
    private readonly Option<double?> _tflops = new("--tflops") { Description = "Sustained TFLOPS, to take a step's compute time from the model FLOPs instead of --step-seconds." };
    // Hidden: tests measure a small file; the default is what the figure is meant to be read at.
    private readonly Option<string?> _probe = new("--disk-probe-size") { Description = "Bytes written and read by the bandwidth probe (default 256MiB).", Hidden = true };

    public const long DefaultProbeBytes = 256L << 20;

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { _bandwidth, _stepSeconds, _tflops, _probe }) command.Options.Add(o);
    }

    /// <summary>True when the config has a disk tier (disk_dir or disk_memory) or --disk-bandwidth is given.</summary>
    public bool Wanted(ParseResult r, TrainingConfig c) => c.Chunks.DiskDir is not null || c.Chunks.DiskMemory is not null || r.GetValue(_bandwidth) is not null;

    /// <summary>Checks the flags (before any work), measures the bandwidth when asked, and estimates.</summary>
    public DiskEstimate Estimate(ParseResult r, TrainingConfig c, MemoryEstimate memory)
    {
        if (!memory.Request.Chunked) throw new ArgumentException("disk_dir / disk_memory / --disk-bandwidth need the chunk engine (the disk tier is the chunk engine's); add --engine chunked.");
        long? budget = c.Chunks.DiskMemory;
        string? dir = c.Chunks.DiskDir is string d ? Path.GetFullPath(d) : null;
        if (dir is not null && !Directory.Exists(dir))
            throw new DirectoryNotFoundException($"disk_dir '{dir}' does not exist; create it or set --disk-dir / disk_dir to an existing folder on the disk to use.");
        double? stepSeconds = r.GetValue(_stepSeconds), tflops = r.GetValue(_tflops);
        if (stepSeconds is not null && tflops is not null) throw new ArgumentException("--step-seconds and --tflops both give the compute time; give one.");
        if (stepSeconds <= 0 || tflops <= 0) throw new ArgumentException("--step-seconds and --tflops must be positive.");
        budget ??= dir is null ? null : new DriveInfo(dir).AvailableFreeSpace;

        DiskRates? given = r.GetValue(_bandwidth) is string b ? Given(b) : null;
        long probe = r.GetValue(_probe) is string p ? ByteSize.Parse(p, "--disk-probe-size") : DefaultProbeBytes;
        double? compute = stepSeconds ?? (tflops is double t ? DiskEstimator.ComputeSeconds(memory.Request, t) : null);
        var estimate = DiskEstimator.Estimate(memory, budget, given, compute);
        // Measured only when the answer needs it: a refusal does not wait for the probe.
        return estimate.Refusal is null && given is null && dir is not null ? estimate with { Rates = Measure(dir, probe) } : estimate;
    }

    /// <summary>"1500" (MB/s), "1.5GB/s", "800MiB/s": the same rate for reads and writes.</summary>
    public static DiskRates Given(string text)
    {
        string t = text.Trim();
        if (t.EndsWith("/s", StringComparison.OrdinalIgnoreCase)) t = t[..^2];
        bool bare = double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double mb);
        double rate = bare ? mb * 1e6 : ByteSize.TryParse(t, out long v) ? v : double.NaN;
        if (!(rate > 0))
            throw new ArgumentException($"--disk-bandwidth '{text}' is not a positive rate; write MB/s (\"1500\") or a size per second (\"1.5GB/s\").");
        return new DiskRates(rate, rate, "given");
    }

    /// <summary>Writes then reads <paramref name="bytes"/> in the folder through the disk tier's own classes (O_DIRECT where allowed).</summary>
    public static DiskRates Measure(string dir, long bytes)
    {
        long chunk = Math.Min(64L << 20, Math.Max(StagingBuffer.Alignment, StagingBuffer.RoundUp(bytes / 4)));
        try
        {
            var b = DiskTierBenchmark.Sequential(dir, DiskIoMode.Auto, Math.Max(chunk, bytes / chunk * chunk), chunk);
            return new DiskRates(b.ReadBytesPerSecond, b.WriteBytesPerSecond,
                $"measured in {dir} ({(b.Direct ? "O_DIRECT" : "buffered")}, {Bytes.Format(b.FileBytes)} in {Bytes.Format(b.ChunkBytes)} chunks)");
        }
        catch (DiskTierRefusedException e)
        {
            throw new ConfigException($"disk_dir: {e.Message}");
        }
    }

    public static void Print(DiskEstimate d)
    {
        var t = new Table().Border(TableBorder.Rounded).Title("Disk tier");
        t.AddColumn("what");
        t.AddColumn(new TableColumn("").RightAligned());
        t.AddRow("chunks on disk", $"{d.OptimizerChunksOnDisk} optimizer (of {3 * d.ChunksPerKind}) + {d.ParamChunksOnDisk} parameter (of {d.ChunksPerKind})");
        t.AddRow("disk need", $"{Bytes.Format(d.DiskBytes)}{(d.DiskBudgetBytes is long b ? $" of {Bytes.Format(b)}" : "")}");
        t.AddRow("host with them on disk", $"{Bytes.Format(d.HostNeedBytes)} of {Bytes.Format(d.HostBudgetBytes)}");
        t.AddRow("staging buffers", $"{Bytes.Format(d.StagingBytes)} beside the host budget");
        t.AddRow("disk traffic per step", $"read {Bytes.Format(d.ReadBytesPerStep)}, write {Bytes.Format(d.WriteBytesPerStep)}");
        t.AddRow("bandwidth", d.Rates is { } r ? CommandErrors.Esc($"read {Bytes.Format(r.ReadBytesPerSecond)}/s, write {Bytes.Format(r.WriteBytesPerSecond)}/s ({r.Source})")
            : "unknown: give disk_dir (--disk-dir, measured) or --disk-bandwidth");
        if (d.IoSeconds is double io) t.AddRow("disk seconds per step", $"{io:0.000} s");
        t.AddRow("predicted step", d.PredictedStepSeconds is double p
            ? $"{p:0.000} s with I/O overlapped (compute {d.ComputeSeconds:0.000} s + max(0, I/O - compute)); {d.SerialStepSeconds:0.000} s without overlap"
            : "unknown: give the bandwidth and --step-seconds or --tflops");
        AnsiConsole.Write(t);
    }

    public static object Json(DiskEstimate d) => new
    {
        fits = d.Fits,
        optimizer_chunks_on_disk = d.OptimizerChunksOnDisk,
        param_chunks_on_disk = d.ParamChunksOnDisk,
        disk_need_bytes = d.DiskBytes,
        disk_budget_bytes = d.DiskBudgetBytes,
        host_need_bytes = d.HostNeedBytes,
        staging_bytes = d.StagingBytes,
        read_bytes_per_step = d.ReadBytesPerStep,
        write_bytes_per_step = d.WriteBytesPerStep,
        read_bytes_per_second = d.Rates?.ReadBytesPerSecond,
        write_bytes_per_second = d.Rates?.WriteBytesPerSecond,
        bandwidth_source = d.Rates?.Source,
        io_seconds = d.IoSeconds,
        compute_seconds = d.ComputeSeconds,
        predicted_step_seconds = d.PredictedStepSeconds,
        serial_step_seconds = d.SerialStepSeconds,
    };
}
