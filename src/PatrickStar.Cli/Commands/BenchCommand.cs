using System.CommandLine;
using PatrickStar.Cli.Benchmarks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// `pstar bench`: the benchmark suite (matmul peaks, the trainers side by side, the Adam step, the scale search), run in
/// one process and one sitting so that ratios compare like with like. The parts live in <see cref="PatrickStar.Cli.Benchmarks"/>;
/// this only turns flags into <see cref="BenchSettings"/>.
/// </summary>
public static class BenchCommand
{
    public const string DefaultReportDirectory = "bench-report";

    public static Command Build()
    {
        var parts = new Option<string?>("--parts") { Description = $"Comma-separated parts to run, in this order: {string.Join(",", BenchSuite.AllParts)} or all (default {string.Join(",", BenchSuite.DefaultParts)})." };
        var quick = new Option<bool>("--quick") { Description = "A small model, fewer steps and repetitions, 16M Adam elements: a few minutes." };
        var hidden = new Option<int?>("--hidden") { Description = "trainers: hidden size of the benchmark GPT (default 1024; quick 512). scale: the fixed width (default 1024)." };
        var layers = new Option<int?>("--layers") { Description = "trainers: transformer blocks (default 8; quick 12)." };
        var heads = new Option<int?>("--heads") { Description = "Attention heads (trainers: default 16, quick 8; scale: default 16)." };
        var family = new Option<string>("--family")
        {
            Description = "trainers and scale: the model family: gpt2, or llama (LLaMA's shape at that width: key/value heads --kv-heads, MLP 8/3 of hidden rounded up to 256).",
            DefaultValueFactory = _ => "gpt2",
        };
        family.AcceptOnlyFromAmong(BenchModel.Families);
        var kvHeads = new Option<int?>("--kv-heads") { Description = "trainers and scale, --family llama: key/value heads (default: a quarter of --heads when it divides them)." };
        var seq = new Option<int?>("--seq") { Description = "trainers: sequence length, also the model's context (default 512; quick 128)." };
        var batch = new Option<int?>("--batch") { Description = "trainers: micro-batch size (default 2)." };
        var steps = new Option<int?>("--steps") { Description = "trainers: measured steps per run after 2 warm-up steps (default 5; quick 3)." };
        var rounds = new Option<int?>("--rounds") { Description = "trainers: repeat the runs one after another this many times (default 1); steps pooled, each ratio to plain the median of the rounds' ratios." };
        var precision = new Option<string>("--precision")
        {
            Description = "trainers: fp32, bf16, bf16-fp32 (bf16 parameters, fp32 compute) or auto (default: the dtype whose matmul peak is higher here; without the matmul part, bf16 where the hardware has bf16 units). scale: the precision of the search (auto: fp32).",
            DefaultValueFactory = _ => "auto",
        };
        precision.AcceptOnlyFromAmong("auto", "fp32", "bf16", "bf16-fp32");
        var deviceMemory = new Option<string?>("--device-memory") { Description = "trainers: device budget of the static and dynamic runs (default: half the available memory, every chunk fits). scale: the device budget (default 1GiB)." };
        var hostMemory = new Option<string?>("--host-memory") { Description = "trainers: host budget of the chunked runs (default: the rest of the available memory). scale: the host budget (default 16GiB)." };
        var tightMemory = new Option<string>("--tight-memory")
        {
            Description = "trainers: device budget of the extra dynamic run: auto (half the parameter chunks, two at least, + the measured non-model peak + 10%), a size, or off.",
            DefaultValueFactory = _ => "auto",
        };
        var diskDir = new Option<DirectoryInfo?>("--disk-dir") { Description = "scale: also search dynamic placement with the disk tier in this folder (disk_dir); needs --disk-memory. overlap: the disk tier's folder (default: the temp directory)." };
        var diskMemory = new Option<string?>("--disk-memory") { Description = "scale: the disk tier's budget (disk_memory) of that search; needs --disk-dir." };
        var chunkSize = new Option<long?>("--chunk-size") { Description = "trainers: elements per chunk of every chunked run (default: the engine's choice; the tight run: the largest tensor's size, the finest layout)." };
        var report = new Option<DirectoryInfo?>("--report") { Description = $"Folder for report.md and report.json (default ./{DefaultReportDirectory})." };
        var json = new Option<FileInfo?>("--json") { Description = "Also write report.json's content to this file." };
        var scale = new Option<bool>("--scale") { Description = "Same as --parts scale." };
        // Hidden knobs for fast tests and odd machines; the defaults are what the figures are meant to be read at.
        var adamElements = new Option<long?>("--adam-elements") { Description = "optimizer: elements per Adam step (default 128M; quick 16M).", Hidden = true };
        var matmulSize = new Option<int?>("--matmul-size") { Description = "matmul: n of the n³ product (default 2048).", Hidden = true };

        var command = new Command("bench",
            "The benchmark suite, in one process: matmul peaks (bf16, fp32); the plain trainer beside the chunk engine with static and dynamic placement " +
            "(speed, TFLOPS, traffic between the tiers, memory peaks, ratios to plain); the Adam step four ways against the memory-bandwidth bound; " +
            $"and, with --parts scale, the largest model (--family gpt2 or llama) each engine trains under budgets. Medians after warm-up. Model FLOPs: {GptConfig.FlopsFormula}. " +
            $"Tables on the console; report.md and report.json in --report (default ./{DefaultReportDirectory})." + Examples.Format(
                "pstar bench --quick                      # a few minutes",
                "pstar bench --parts trainers --precision fp32 --report bench-fp32",
                "pstar bench --parts scale --precision bf16-fp32",
                "pstar bench --parts scale --host-memory 8GiB --disk-dir /nvme/pstar --disk-memory 64GiB",
                "pstar bench --parts scale --family llama --device-memory 1GiB --host-memory 16GiB",
                "pstar bench --parts overlap --precision fp32 --disk-dir /nvme/pstar   # read-ahead on vs off"));
        foreach (var o in new Option[] { parts, quick, family, kvHeads, hidden, layers, heads, seq, batch, steps, rounds, precision, deviceMemory, hostMemory, tightMemory, diskDir, diskMemory, chunkSize, report, json, scale, adamElements, matmulSize })
            command.Options.Add(o);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            bool q = r.GetValue(quick);
            var partList = r.GetValue(scale)
                ? r.GetValue(parts) is null ? new List<string> { "scale" } : throw new ArgumentException("--scale is --parts scale; give one of them.")
                : BenchSuite.ParseParts(r.GetValue(parts) ?? string.Join(",", BenchSuite.DefaultParts));
            long? device = ParseSize(r.GetValue(deviceMemory), "--device-memory");
            long? host = ParseSize(r.GetValue(hostMemory), "--host-memory");
            string tight = r.GetValue(tightMemory)!;
            var (scaleDiskDir, scaleDiskMemory) = DiskFlags(r.GetValue(diskDir), ParseSize(r.GetValue(diskMemory), "--disk-memory"), partList);
            var settings = new BenchSettings
            {
                Parts = partList,
                Quick = q,
                Family = r.GetValue(family)!,
                KvHeads = r.GetValue(kvHeads) is int kv ? Positive(kv, "--kv-heads") : null,
                Hidden = Positive(r.GetValue(hidden) ?? (q ? 512 : 1024), "--hidden"),
                // Quick: 12 layers so that the tight run's layout has three chunks beside the 50257-token embedding, and something to evict.
                Layers = Positive(r.GetValue(layers) ?? (q ? 12 : 8), "--layers"),
                Heads = Positive(r.GetValue(heads) ?? (q ? 8 : 16), "--heads"),
                Seq = Positive(r.GetValue(seq) ?? (q ? 128 : 512), "--seq"),
                Batch = Positive(r.GetValue(batch) ?? 2, "--batch"),
                Steps = Positive(r.GetValue(steps) ?? (q ? 3 : 5), "--steps"),
                Rounds = Positive(r.GetValue(rounds) ?? 1, "--rounds"),
                Precision = r.GetValue(precision) is "auto" or null ? null : PrecisionNames.Parse(r.GetValue(precision)!),
                DeviceMemory = device,
                HostMemory = host,
                TightMemory = tight.Equals("auto", StringComparison.OrdinalIgnoreCase) ? null
                    : tight.Equals("off", StringComparison.OrdinalIgnoreCase) ? 0
                    : ByteSize.Parse(tight, "--tight-memory"),
                ChunkSize = r.GetValue(chunkSize) is long cs ? Positive(cs, "--chunk-size") : null,
                MatmulSize = Positive(r.GetValue(matmulSize) ?? 2048, "--matmul-size"),
                MatmulReps = q ? 5 : 9,
                MatmulBudgetSeconds = q ? 10 : 20,
                AdamElements = Positive(r.GetValue(adamElements) ?? (q ? 16L << 20 : 128L << 20), "--adam-elements"),
                AdamReps = q ? 3 : 5,
                ScaleDeviceMemory = device ?? 1L << 30,
                ScaleHostMemory = host ?? 16L << 30,
                ScaleDiskDir = scaleDiskDir,
                ScaleDiskMemory = scaleDiskMemory,
                OverlapDiskDir = partList.Contains("overlap") ? r.GetValue(diskDir)?.FullName : null,
                ScaleHidden = Positive(r.GetValue(hidden) ?? 1024, "--hidden"),
                ScaleHeads = Positive(r.GetValue(heads) ?? 16, "--heads"),
            };
            string reportDir = r.GetValue(report)?.FullName ?? Path.GetFullPath(DefaultReportDirectory);
            OutputPaths.EnsureWritableDirectory(reportDir, "--report folder");
            if (r.GetValue(json) is FileInfo jsonFile) OutputPaths.EnsureWritableFile(jsonFile.FullName, "--json file");
            return BenchSuite.Run(settings, CommandLine(r), reportDir, r.GetValue(json)?.FullName);
        }));
        return command;
    }

    /// <summary>--disk-dir and --disk-memory: both or neither, for the scale part, an existing folder and a positive budget
    /// (the overlap part takes --disk-dir alone).</summary>
    internal static (string? Dir, long? Memory) DiskFlags(DirectoryInfo? dir, long? memory, IReadOnlyList<string> parts)
    {
        if (dir is null && memory is null) return (null, null);
        if (parts.Contains("overlap") && !parts.Contains("scale") && memory is null)
            return dir!.Exists ? (null, null) : throw new DirectoryNotFoundException($"--disk-dir '{dir.FullName}' does not exist; create it or give an existing folder on the disk to use.");
        if (dir is null || memory is null)
            throw new ArgumentException("--disk-dir and --disk-memory go together: give the disk tier's folder and its budget, or neither.");
        if (!parts.Contains("scale")) throw new ArgumentException("--disk-dir and --disk-memory are for the scale part (--disk-dir alone also for the overlap part); add --parts scale.");
        if (!dir.Exists) throw new DirectoryNotFoundException($"--disk-dir '{dir.FullName}' does not exist; create it or give an existing folder on the disk to use.");
        if (memory <= 0) throw new ArgumentException($"--disk-memory must be positive (got {memory} B).");
        return (dir.FullName, memory);
    }

    private static long? ParseSize(string? text, string flag) => text is null ? null : ByteSize.Parse(text, flag);

    private static T Positive<T>(T value, string flag) where T : System.Numerics.INumber<T> =>
        value > T.Zero ? value : throw new ArgumentException($"{flag} must be positive (got {value}).");

    /// <summary>The command as typed (from the parsed tokens, so that it is right in-process too), quoted where needed.</summary>
    private static string CommandLine(ParseResult r) =>
        "pstar " + string.Join(" ", r.Tokens.Select(t => t.Value.Any(char.IsWhiteSpace) || t.Value.Length == 0 ? $"\"{t.Value}\"" : t.Value));
}
