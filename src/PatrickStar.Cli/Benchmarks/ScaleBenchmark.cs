using PatrickStar.Cli.Commands;
using PatrickStar.Config;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;
using Spectre.Console;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// The largest model of a family (by layer count at a fixed width: <see cref="BenchModel"/>) that each engine trains for a few steps under given
/// device and host budgets: the plain trainer (everything within the device budget, measured), the chunk
/// engine with static placement, and with dynamic placement; with a disk budget also dynamic placement with the disk tier
/// (<see cref="DiskPolicy"/>). Found by doubling, then bisection.
/// </summary>
public static class ScaleBenchmark
{
    /// <summary>Dynamic placement with chunks spilling to disk (config keys disk_dir and disk_memory).</summary>
    public const string DiskPolicy = "dynamic+disk";

    public sealed record Outcome(string Policy, int Layers, long Parameters);

    /// <summary>The search's budgets; <see cref="DiskDir"/> and <see cref="DiskMemory"/> together add the <see cref="DiskPolicy"/> search.</summary>
    public sealed record Budgets(long Device, long Host, string? DiskDir = null, long? DiskMemory = null)
    {
        public bool HasDisk => DiskDir is not null && DiskMemory is not null;
    }

    /// <summary>The policies searched, in order: the disk one last, beside dynamic placement without it.</summary>
    public static string[] Policies(Budgets budgets) =>
        budgets.HasDisk ? new[] { "plain", "static", "dynamic", DiskPolicy } : new[] { "plain", "static", "dynamic" };

    /// <param name="precision">The training precision of every trial (fp32 unless asked; bf16-fp32 stores 14 B/param at fp32 speed).</param>
    public static List<Outcome> Run(Budgets budgets, int hidden, int heads, int seq, int maxLayers,
        Precision precision = Precision.Fp32, string family = "gpt2", int? kvHeads = null)
    {
        long deviceBudget = budgets.Device, hostBudget = budgets.Host;
        var outcomes = new List<Outcome>();
        foreach (var policy in Policies(budgets))
        {
            int best = 0;
            int lo = 0, hi = 1;
            // Doubling until a size fails (or the ceiling), then bisection between the last success and the failure.
            while (hi <= maxLayers && Trial(policy, hi, budgets, hidden, heads, seq, precision, family, kvHeads)) { lo = hi; hi *= 2; }
            hi = Math.Min(hi, maxLayers + 1);
            while (hi - lo > 1)
            {
                int mid = (lo + hi) / 2;
                if (Trial(policy, mid, budgets, hidden, heads, seq, precision, family, kvHeads)) lo = mid; else hi = mid;
            }
            best = lo;
            long parameters = best == 0 ? 0 : Config(policy, best, deviceBudget, hostBudget, hidden, heads, seq, precision, family, kvHeads).ParameterCountFor();
            outcomes.Add(new Outcome(policy, best, parameters));
        }
        return outcomes;
    }

    private static long ParameterCountFor(this TrainingConfig c) => GptRun.ResolveChoice(c).ParameterCount;

    /// <summary>The configuration of one trial: the family's model with <paramref name="layers"/> blocks under the engine's budgets.</summary>
    public static TrainingConfig Config(string policy, int layers, long device, long host, int hidden, int heads, int seq, Precision precision,
        string family = "gpt2", int? kvHeads = null) => new()
    {
        Precision = precision,
        Model = BenchModel.Section(family, seq, layers, hidden, heads, kvHeads),
        MicroBatchSize = 1,
        SequenceLength = seq,
        Steps = 3,
        Eval = new EvalSection { Interval = 0 },
        Engine = policy == "plain" ? "plain" : "chunked",
        Chunks = new ChunkSection
        {
            DeviceMemory = device,
            HostMemory = host,
            Placement = policy == "static" ? ChunkPlacement.Static : ChunkPlacement.Dynamic,
        },
    };

    /// <summary>Does this size train three steps within the budgets? Sizes the machine itself cannot hold count as failures.</summary>
    private static bool Trial(string policy, int layers, Budgets budgets, int hidden, int heads, int seq, Precision precision,
        string family, int? kvHeads)
    {
        long device = budgets.Device, host = budgets.Host;
        var config = Config(policy, layers, device, host, hidden, heads, seq, precision, family, kvHeads);
        long parameters = config.ParameterCountFor();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var now = MemoryMeter.Snapshot();
        // What the machine has free, plus what this process's allocator holds from earlier trials without using it.
        long machine = (MemoryMeter.AvailableHostMemory() ?? long.MaxValue / 2) + Math.Max(0, now.Resident - now.NativeInUse);
        // The chunks' model data per parameter (16 B in fp32, 14 B with bf16 parameters), 2 B/param more for the model
        // moving into them, activations and pools, within 85% of the machine.
        long perParameter = PatrickStar.Engine.ChunkEngineOptions.HostBytesPerParameter(config) + 2;
        // With the disk tier, what the disk budget holds need not be in memory.
        long onDisk = policy == DiskPolicy ? budgets.DiskMemory ?? 0 : 0;
        if (parameters * perParameter - onDisk > machine * 0.85)
        {
            Report(policy, layers, parameters, "beyond this machine's memory");
            return false;
        }
        if (policy == "plain")
            return PlainTrial(config, layers, parameters, device, precision);
        return ChunkedTrial(TrialJson(policy, layers, budgets, hidden, heads, seq, precision, family, kvHeads), policy, layers, parameters);
    }

    /// <summary>The plain trainer in this process, with its peak measured against the device budget.</summary>
    private static bool PlainTrial(TrainingConfig config, int layers, long parameters, long device, Precision precision)
    {
        if (parameters * PlainEngine.BytesPerParameter(precision) > device)
        {
            Report("plain", layers, parameters, "model data alone exceeds the device budget");
            return false;
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long baseline = MemoryMeter.NativeInUse();
        using var sampler = new PeakSampler();
        try
        {
            sampler.Start();
            using var run = GptRun.Create(config);
            run.Trainer.Run();
            long peak = sampler.TakePeak() - baseline;
            if (peak > device)
            {
                Report("plain", layers, parameters, $"measured {Bytes.Format(peak)} > device budget");
                return false;
            }
            Report("plain", layers, parameters, null);
            return true;
        }
        catch (Exception e) when (e is TierBudgetExceededException or PatrickStar.Profiling.InsufficientMemoryException)
        {
            Report("plain", layers, parameters, e.Message.Split(':')[0]);
            return false;
        }
    }

    /// <summary>
    /// A chunk-engine trial in its own `pstar train` process: models of many GB, one after another, would otherwise
    /// leave the sitting's heap fragmented, and a trial the kernel kills for memory would take the whole sitting with it.
    /// </summary>
    private static bool ChunkedTrial(string configJson, string policy, int layers, long parameters)
    {
        string file = Path.Combine(Path.GetTempPath(), $"pstar-scale-{Environment.ProcessId}-{policy.Replace('+', '-')}-{layers}.json");
        File.WriteAllText(file, configJson);
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(LaunchCommand.SelfCommand()[0])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in LaunchCommand.SelfCommand().Skip(1)) start.ArgumentList.Add(a);
            foreach (var a in new[] { "train", "--config", file, "--plain-output" }) start.ArgumentList.Add(a);
            start.Environment["TERM"] = "dumb";
            using var process = System.Diagnostics.Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            process.WaitForExit();
            if (process.ExitCode == 0)
            {
                Report(policy, layers, parameters, null);
                return true;
            }
            string reason = process.ExitCode == 137
                ? "killed by the system (out of memory)"
                : error.Result.Split('\n').FirstOrDefault(l => l.StartsWith("error: ", StringComparison.Ordinal))?["error: ".Length..].Split(':')[0]
                  ?? $"exit code {process.ExitCode}";
            Report(policy, layers, parameters, reason);
            return false;
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>The config file a chunk-engine trial trains with: the disk policy adds the disk tier (disk_dir, disk_memory).</summary>
    public static string TrialJson(string policy, int layers, Budgets budgets, int hidden, int heads, int seq, Precision precision,
        string family = "gpt2", int? kvHeads = null)
    {
        var config = Config(policy, layers, budgets.Device, budgets.Host, hidden, heads, seq, precision, family, kvHeads);
        if (policy == DiskPolicy)
        {
            if (!budgets.HasDisk) throw new ArgumentException($"The {DiskPolicy} trial needs a disk directory and budget.", nameof(budgets));
            config.Chunks.DiskDir = budgets.DiskDir;
            config.Chunks.DiskMemory = budgets.DiskMemory;
        }
        return ConfigLoader.ToJson(config);
    }

    private static void Report(string policy, int layers, long parameters, string? failure) =>
        AnsiConsole.MarkupLine($"[grey]  {policy,-12} {layers,3} layers {parameters / 1e6,8:N1}M params: {(failure is null ? "trains" : CommandErrors.Esc(failure))}[/]");
}
