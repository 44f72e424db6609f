using PatrickStar.Cli.Commands;
using PatrickStar.Config;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using Spectre.Console;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>The sizes and budgets of one `pstar bench` sitting, defaults already applied.</summary>
public sealed record BenchSettings
{
    public required IReadOnlyList<string> Parts { get; init; }
    public bool Quick { get; init; }
    /// <summary>trainers and scale: the model family (<see cref="BenchModel.Families"/>) and, for LLaMA, its key/value heads (null: the default).</summary>
    public string Family { get; init; } = "gpt2";
    public int? KvHeads { get; init; }

    // trainers
    public int Hidden { get; init; }
    public int Layers { get; init; }
    public int Heads { get; init; }
    public int Seq { get; init; }
    public int Batch { get; init; }
    public int Steps { get; init; }
    public int WarmupSteps { get; init; } = 2;
    /// <summary>How many times the trainer runs are repeated one after another (their steps pooled, ratios per round).</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>Null: bf16 if its matmul peak is higher (or, without the matmul part, if the hardware has bf16 units).</summary>
    public Precision? Precision { get; init; }
    /// <summary>Device budget of the static and dynamic runs; null: half the machine's available memory (every chunk fits).</summary>
    public long? DeviceMemory { get; init; }
    /// <summary>Host budget of the chunked runs; null: the other half.</summary>
    public long? HostMemory { get; init; }
    /// <summary>The extra dynamic run's budget: null = automatic (half the parameter chunks + the non-model peak), 0 = no such run.</summary>
    public long? TightMemory { get; init; }
    /// <summary>Elements per chunk of every chunked run; null: the engine's search (the tight run: the largest tensor's size).</summary>
    public long? ChunkSize { get; init; }

    // matmul
    public int MatmulSize { get; init; } = 2048;
    public int MatmulReps { get; init; }
    public double MatmulBudgetSeconds { get; init; }

    // optimizer
    public long AdamElements { get; init; }
    public int AdamReps { get; init; } = 5;

    // scale
    public long ScaleDeviceMemory { get; init; }
    public long ScaleHostMemory { get; init; }
    /// <summary>The disk tier's folder and budget (disk_dir, disk_memory): both given adds a search with the disk tier.</summary>
    public string? ScaleDiskDir { get; init; }
    public long? ScaleDiskMemory { get; init; }

    // overlap
    /// <summary>The disk tier's folder of the overlap part (--disk-dir); null: the temp directory.</summary>
    public string? OverlapDiskDir { get; init; }
    public int ScaleHidden { get; init; }
    public int ScaleHeads { get; init; }
}

/// <summary>A part of the suite: measures, adds its tables to the report, and its figures under its name in report.json.</summary>
public interface IBenchPart
{
    string Name { get; }
    void Run(BenchContext context);
}

/// <summary>What the parts share within one sitting: settings, device, report, and figures a later part uses (the matmul peaks).</summary>
public sealed class BenchContext
{
    public BenchContext(BenchSettings settings, torch.Device device, BenchReport report)
    {
        Settings = settings;
        Device = device;
        Report = report;
    }

    public BenchSettings Settings { get; }
    public torch.Device Device { get; }
    public BenchReport Report { get; }
    public MachineFacts Machine => Report.Machine;

    /// <summary>Set by the matmul part when it ran.</summary>
    public MatmulResult? Bf16Matmul { get; set; }
    public MatmulResult? Fp32Matmul { get; set; }

    /// <summary>Set by the trainers part: the precision it trained in, and each run's median step (the ceiling part compares them).</summary>
    public Precision? TrainersPrecision { get; set; }
    public List<(string Label, double Seconds)> TrainerSteps { get; } = new();

    public static void Progress(string text) => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(text)}[/]");
}

/// <summary>Runs the chosen parts in order in this process and writes the report.</summary>
public static class BenchSuite
{
    /// <summary>The parts in the order they run (ceiling after trainers, to set their steps against it); the default set is all but scale (a search of many trainings), disk and overlap.</summary>
    public static readonly string[] AllParts = { "matmul", "trainers", "ceiling", "optimizer", "scale", "disk", "overlap" };
    public static readonly string[] DefaultParts = { "matmul", "trainers", "ceiling", "optimizer" };

    /// <summary>"matmul,trainers" (any order, any case, "all") as parts in run order; unknown names are refused.</summary>
    public static List<string> ParseParts(string text)
    {
        var names = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => n.ToLowerInvariant()).ToList();
        if (names.Count == 0) throw new ArgumentException($"--parts is empty; choose from {string.Join(",", AllParts)}.");
        if (names.Contains("all")) return AllParts.ToList();
        var unknown = names.Where(n => !AllParts.Contains(n)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"unknown bench part{(unknown.Count > 1 ? "s" : "")} '{string.Join("', '", unknown)}'; choose from {string.Join(",", AllParts)} (or all).");
        return AllParts.Where(names.Contains).ToList();
    }

    public static int Run(BenchSettings settings, string commandLine, string? reportDirectory, string? jsonPath)
    {
        TorchRuntime.EnsureLoaded();
        var device = TorchRuntime.ResolveDevice("auto");
        var report = new BenchReport(commandLine, MachineFacts.Read(device), settings.Parts);
        var context = new BenchContext(settings, device, report);
        foreach (var (name, value) in report.Machine.Describe()) BenchContext.Progress($"{name}: {value}");

        foreach (var name in settings.Parts)
        {
            IBenchPart part = name switch
            {
                "matmul" => new MatmulPart(),
                "trainers" => new TrainersPart(),
                "ceiling" => new CeilingPart(),
                "optimizer" => new OptimizerPart(),
                "scale" => new ScalePart(),
                "disk" => new DiskPart(),
                "overlap" => new OverlapPart(),
                _ => throw new ArgumentException($"unknown bench part '{name}'."),
            };
            part.Run(context);
        }

        var memory = MemoryMeter.Snapshot();
        report.Json["peak_rss_bytes"] = memory.PeakResident;
        BenchContext.Progress($"peak resident memory of this sitting: {Bytes.Format(memory.PeakResident)}");
        foreach (var path in report.Write(reportDirectory, jsonPath))
            AnsiConsole.MarkupLine($"Report written to {CommandErrors.Esc(path)}");
        return 0;
    }
}
