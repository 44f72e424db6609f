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
/// The largest GPT (by layer count at a fixed width) that each engine trains for a few steps under given
/// device and host budgets: the plain trainer (everything within the device budget, measured), the chunk
/// engine with static placement, and with dynamic placement. Found by doubling, then bisection.
/// </summary>
public static class ScaleBenchmark
{
    public sealed record Outcome(string Policy, int Layers, long Parameters);

    /// <param name="precision">The training precision of every trial (fp32 unless asked; bf16-fp32 stores 14 B/param at fp32 speed).</param>
    public static List<Outcome> Run(long deviceBudget, long hostBudget, int hidden, int heads, int seq, int maxLayers,
        Precision precision = Precision.Fp32)
    {
        var outcomes = new List<Outcome>();
        foreach (var policy in new[] { "plain", "static", "dynamic" })
        {
            int best = 0;
            int lo = 0, hi = 1;
            // Doubling until a size fails (or the ceiling), then bisection between the last success and the failure.
            while (hi <= maxLayers && Trial(policy, hi, deviceBudget, hostBudget, hidden, heads, seq, precision)) { lo = hi; hi *= 2; }
            hi = Math.Min(hi, maxLayers + 1);
            while (hi - lo > 1)
            {
                int mid = (lo + hi) / 2;
                if (Trial(policy, mid, deviceBudget, hostBudget, hidden, heads, seq, precision)) lo = mid; else hi = mid;
            }
            best = lo;
            long parameters = best == 0 ? 0 : Config(policy, best, deviceBudget, hostBudget, hidden, heads, seq, precision).ParameterCountFor();
            outcomes.Add(new Outcome(policy, best, parameters));
        }
        return outcomes;
    }

    private static long ParameterCountFor(this TrainingConfig c) => GptRun.ResolveModel(c).ParameterCount;

    private static TrainingConfig Config(string policy, int layers, long device, long host, int hidden, int heads, int seq, Precision precision) => new()
    {
        Precision = precision,
        Model = new ModelSection { Preset = null, VocabSize = GptConfig.Gpt2VocabSize, ContextLength = seq, Layers = layers, Hidden = hidden, Heads = heads, Dropout = 0 },
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
    private static bool Trial(string policy, int layers, long device, long host, int hidden, int heads, int seq, Precision precision)
    {
        var config = Config(policy, layers, device, host, hidden, heads, seq, precision);
        long parameters = config.ParameterCountFor();
        // What the machine has free, plus what this process's allocator holds from earlier trials without using it
        // (freed memory is kept for reuse, not returned to the system: see NativeAllocator).
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var now = MemoryMeter.Snapshot();
        long machine = (MemoryMeter.AvailableHostMemory() ?? long.MaxValue / 2) + Math.Max(0, now.Resident - now.NativeInUse);
        // The chunks' model data per parameter (16 B in fp32, 14 B with bf16 parameters); the model moves into them
        // chunk by chunk; with activations, pools and the heap's fragmentation after earlier trials, 2 B/param more
        // within 80% of it (a 1.0B fp32 trial at 17 B/param within 85% was killed for memory on a 23.5 GiB machine,
        // taking the whole sitting with it).
        long perParameter = PatrickStar.Engine.ChunkEngineOptions.HostBytesPerParameter(config) + 2;
        if (parameters * perParameter > machine * 0.8)
        {
            Report(policy, layers, parameters, "beyond this machine's memory");
            return false;
        }
        if (policy == "plain" && parameters * PlainEngine.BytesPerParameter(precision) > device)
        {
            Report(policy, layers, parameters, "model data alone exceeds the device budget");
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
            if (policy == "plain" && peak > device)
            {
                Report(policy, layers, parameters, $"measured {Bytes.Format(peak)} > device budget");
                return false;
            }
            Report(policy, layers, parameters, null);
            return true;
        }
        catch (Exception e) when (e is TierBudgetExceededException or PatrickStar.Profiling.InsufficientMemoryException)
        {
            Report(policy, layers, parameters, e.Message.Split(':')[0]);
            return false;
        }
    }

    private static void Report(string policy, int layers, long parameters, string? failure) =>
        AnsiConsole.MarkupLine($"[grey]  {policy,-7} {layers,3} layers {parameters / 1e6,8:N1}M params: {(failure is null ? "trains" : CommandErrors.Esc(failure))}[/]");
}
