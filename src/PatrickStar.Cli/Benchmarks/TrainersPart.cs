using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Timing;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Part `trainers`: the plain trainer and the chunk engine (static placement, dynamic placement, and dynamic under a
/// tight device budget) on the same model, seed and data, side by side: speed, traffic between the tiers, memory peaks.
/// </summary>
/// <remarks>
/// Budgets: without --device-memory the static and dynamic runs get half the machine's available memory (every chunk fits:
/// the figures are the engine's pure overhead). The tight run, unless --tight-memory off, is dynamic placement under
/// ⌈half the parameter chunks⌉ plus the non-model peak the first dynamic run measured (+10% for run-to-run noise), so that
/// eviction traffic shows; --tight-memory SIZE sets that budget instead.
/// </remarks>
public sealed partial class TrainersPart : IBenchPart
{
    public string Name => "trainers";

    /// <summary>One trainer run: its settings, and its figures when it trained (Error set when it did not fit).</summary>
    private sealed class RunResult
    {
        public required string Label { get; init; }
        public required string Engine { get; init; }
        public string? Placement { get; init; }
        public long? DeviceBudget { get; init; }
        public long? HostBudget { get; init; }
        public string? Error { get; set; }
        public List<double> AllSeconds { get; } = new();
        public List<double> MeasuredSeconds { get; } = new();
        public List<PatrickStar.Training.EngineStatistics> MeasuredStatistics { get; } = new();
        public List<IReadOnlyDictionary<StepPhase, double>> MeasuredPhases { get; } = new();
        public List<ProcessCounters> MeasuredCounters { get; } = new();
        public ProcessCounters? LastCounters { get; set; }
        public double Median => Measure.Median(MeasuredSeconds);
        /// <summary>The median step of each round (one entry per round this run trained in).</summary>
        public List<double> RoundMedians { get; } = new();
        /// <summary>Per round (as <see cref="RoundMedians"/>), the index of the matmul probe taken just before the run; the next probe follows it.</summary>
        public List<int> RoundProbes { get; } = new();
        public double FirstLoss { get; set; }
        public double LastLoss { get; set; }
        public long PeakDevice { get; set; }
        public long? PeakDeviceModel { get; set; }
        public long? PeakDeviceNonModel { get; set; }
        public long? PeakHost { get; set; }
        public long? DeviceTierPeakInUse { get; set; }
        public int? Chunks { get; set; }
        public long? ChunkElements { get; set; }

        /// <summary>Median over the measured iterations of one chunk-engine figure; null when the engine does not report it.</summary>
        public double? Stat(Func<PatrickStar.Training.ChunkIterationStatistics, double> figure)
        {
            var values = MeasuredStatistics.Select(s => s.Chunks?.LastIteration).OfType<PatrickStar.Training.ChunkIterationStatistics>().Select(figure).ToList();
            return values.Count == 0 ? null : Measure.Median(values);
        }
    }

    public void Run(BenchContext context)
    {
        var s = context.Settings;
        var precision = s.Precision ?? ChoosePrecision(context);
        context.TrainersPrecision = precision;
        var config = Config(s, precision);
        var choice = GptRun.ResolveChoice(config);
        double flops = choice.TrainingFlops(s.Batch, s.Seq);
        var peak = precision == Precision.Bf16 ? context.Bf16Matmul : context.Fp32Matmul;
        long available = MemoryMeter.AvailableHostMemory() ?? 0;
        long ample = s.DeviceMemory ?? (context.Device.type == DeviceType.CPU && available > 0
            ? available / 2
            : throw new ArgumentException("--device-memory is needed for the trainers part on this device (its memory cannot be queried): e.g. --device-memory 20GiB."));
        long host = s.HostMemory ?? Math.Max(available - (context.Device.type == DeviceType.CPU ? ample : 0), 0);
        string budgetWord = s.DeviceMemory is null ? "ample" : "given";

        BenchContext.Progress($"trainers: {Describe(choice)} hidden {s.Hidden}, {s.Layers} layers, {s.Heads} heads, seq {s.Seq}, batch {s.Batch}, {precision.ToString().ToLowerInvariant()}, " +
                              $"{choice.ParameterCount / 1e6:N1}M parameters; {s.WarmupSteps} warm-up + {s.Steps} measured steps per run...");
        // One dataset for every run: same tokens, same batches (the trainer's order comes from the seed).
        var data = GptRun.LoadData(config, Gpt2Tokenizer.Instance);
        StepPhases.Synchronize = context.Device.type == DeviceType.CUDA ? () => torch.cuda.synchronize() : null;
        StepPhases.Enabled = true;
        try
        {
            RunAll(context, s, config, data, choice, precision, flops, peak, ample, host, budgetWord);
        }
        finally
        {
            StepPhases.Enabled = false;
            StepPhases.Synchronize = null;
        }
    }

    private void RunAll(BenchContext context, BenchSettings s, TrainingConfig config, TokenDataset data, ModelChoice choice, Precision precision,
        double flops, MatmulResult? peak, long ample, long host, string budgetWord)
    {
        long? tight = null;
        List<RunResult>? runs = null;
        var probes = new List<double>();
        // The tight run uses the finest layout (chunks the size of the largest tensor) unless --chunk-size says otherwise:
        // the engine's default search often packs a small model into one or two chunks, leaving nothing to evict.
        long tightChunk = s.ChunkSize ?? LargestTensor(config, choice);
        int Probe()
        {
            probes.Add(PeakProbe(context, precision));
            return probes.Count - 1;
        }
        for (int round = 1; round <= s.Rounds; round++)
        {
            if (s.Rounds > 1) BenchContext.Progress($" round {round} of {s.Rounds}:");
            var these = RunRound(s, config, data, choice, ample, host, budgetWord, tightChunk, ref tight, first: round == 1, Probe);
            runs = runs is null ? these : Merge(runs, these);
        }
        Probe(); // every run is followed by a probe: the next run's, or this one
        Report(context, s, choice, precision, flops, peak, runs!, tight, probes);
    }

    /// <summary>
    /// One round: plain, static, dynamic and (unless off) tight, one after another. The tight budget is sized in the first
    /// round from its dynamic run and kept for later rounds, so that every round trains the same four runs.
    /// </summary>
    private static List<RunResult> RunRound(BenchSettings s, TrainingConfig config, TokenDataset data, ModelChoice choice, long ample, long host,
        string budgetWord, long tightChunk, ref long? tight, bool first, Func<int> probe)
    {
        var probeBefore = new Dictionary<RunResult, int>();
        RunResult After(int probeIndex, RunResult run)
        {
            probeBefore[run] = probeIndex;
            return run;
        }
        var runs = new List<RunResult> { After(probe(), MeasurePlain(config, data, s)) };
        runs.Add(After(probe(), MeasureChunked(config, data, s, $"chunked static ({budgetWord} budget)", ChunkPlacement.Static, ample, host)));
        var dynamic = After(probe(), MeasureChunked(config, data, s, $"chunked dynamic ({budgetWord} budget)", ChunkPlacement.Dynamic, ample, host));
        runs.Add(dynamic);
        if (first)
            tight = s.TightMemory switch
            {
                0 => null,
                long given => given,
                null => AutoTightBudget(config, choice, dynamic, tightChunk, host),
            };
        if (tight is long t)
            runs.Add(After(probe(), MeasureChunked(config, data, s, "chunked dynamic (tight budget)", ChunkPlacement.Dynamic, t, host, tightChunk)));
        else if (first && s.TightMemory is null)
            BenchContext.Progress("no tight-budget run: the dynamic run did not train, so there is no non-model peak to size it from.");
        foreach (var r in runs.Where(r => r.Error is null && r.MeasuredSeconds.Count > 0))
        {
            r.RoundMedians.Add(r.Median);
            r.RoundProbes.Add(probeBefore[r]);
        }
        return runs;
    }

    /// <summary>
    /// The runs of a later round folded into the first round's: measured steps, phases, counters and statistics appended,
    /// round medians kept apart (memory peaks and losses stay the first round's: the same model, seed and data give the same).
    /// </summary>
    private static List<RunResult> Merge(List<RunResult> into, List<RunResult> round)
    {
        foreach (var (a, b) in into.Zip(round))
        {
            if (a.Error is not null) continue;
            if (b.Error is not null) { a.Error = b.Error; continue; }
            a.AllSeconds.AddRange(b.AllSeconds);
            a.MeasuredSeconds.AddRange(b.MeasuredSeconds);
            a.MeasuredStatistics.AddRange(b.MeasuredStatistics);
            a.MeasuredPhases.AddRange(b.MeasuredPhases);
            a.MeasuredCounters.AddRange(b.MeasuredCounters);
            a.RoundMedians.AddRange(b.RoundMedians);
            a.RoundProbes.AddRange(b.RoundProbes);
        }
        return into;
    }

    /// <summary>
    /// A run's step time over plain's: the median over rounds of each round's ratio of medians, so that a machine whose
    /// speed drifts between rounds (seen: 20% within half an hour) moves both sides of every ratio alike.
    /// </summary>
    public static double RatioToPlain(IReadOnlyList<double> run, IReadOnlyList<double> plain) =>
        Measure.Median(run.Zip(plain, (r, p) => r / p).ToList());

    /// <summary>
    /// A run's model FLOPs per second over the matmul rate of its own moment, per round: that round's median step against the
    /// faster of the probe taken just before the run and the one just after it (<paramref name="probeBefore"/> and the next).
    /// The machine's compute speed drifts within minutes (a probe at 416 GFLOPS and one at 669 in one sitting), so a peak
    /// shared by every run of a sitting credits or blames each run for the moment it ran in. The faster, not the mean: a
    /// probe is three products, and a hiccup can slow it (seen: 458 between probes of 681 and 687) but nothing makes it
    /// faster than the machine was, so the run is never credited with a probe's bad moment.
    /// </summary>
    public static List<double> MfuPerRound(double flops, IReadOnlyList<double> roundMedians, IReadOnlyList<int> probeBefore, IReadOnlyList<double> probesGflops) =>
        roundMedians.Zip(probeBefore, (median, i) => flops / median / 1e9 / Math.Max(probesGflops[i], probesGflops[i + 1])).ToList();

    /// <summary>
    /// The trainers' dtype's matmul rate just before a run (and after the last): a few products of the matmul part's size.
    /// The machine's speed drifts (20% within half an hour, seen here), so a peak taken minutes earlier moves every MFU;
    /// the median of these probes is the peak beside the runs.
    /// </summary>
    private static double PeakProbe(BenchContext context, Precision precision)
    {
        var dtype = precision == Precision.Bf16 ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        var s = context.Settings;
        return MatmulPeak.Run(context.Device, dtype, n: s.MatmulSize, reps: 3, budgetSeconds: s.MatmulBudgetSeconds / 4).Gflops;
    }

    /// <summary>bf16 when its measured matmul peak is higher; without the matmul part, when the hardware has bf16 units.</summary>
    internal static Precision ChoosePrecision(BenchContext context)
    {
        bool bf16 = context.Bf16Matmul is { } b && context.Fp32Matmul is { } f ? b.Gflops >= f.Gflops : context.Machine.Bf16LikelyFast;
        var chosen = bf16 ? Precision.Bf16 : Precision.Fp32;
        BenchContext.Progress(context.Bf16Matmul is { } b2 && context.Fp32Matmul is { } f2
            ? $"auto precision: {chosen.ToString().ToLowerInvariant()} (bf16 {b2.Gflops:N1} vs fp32 {f2.Gflops:N1} GFLOPS matmul here)"
            : $"auto precision: {chosen.ToString().ToLowerInvariant()} (no matmul part: chosen by {(bf16 ? "the device's bf16 units" : "the absence of AVX-512 BF16/AMX")})");
        return chosen;
    }

    /// <summary>Elements of the model's largest parameter tensor: the smallest chunk size that can hold every tensor.</summary>
    private static long LargestTensor(TrainingConfig config, ModelChoice choice)
    {
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(WithEngine(config, "chunked"), choice, null, 0), suggestKnobs: false);
        return estimate.Layout!.Placements.Max(p => p.Numel);
    }

    /// <summary>
    /// ⌈half the parameter chunks⌉ (in the tight run's layout) plus the dynamic run's measured non-model peak and a tenth more
    /// for noise; raised to what the estimator asks for when that is more, since the run is refused below it before it starts.
    /// </summary>
    private static long? AutoTightBudget(TrainingConfig config, ModelChoice choice, RunResult dynamic, long chunkSize, long host)
    {
        if (dynamic.Error is not null || dynamic.PeakDeviceNonModel is not long nonModel) return null;
        var tightConfig = WithEngine(config, "chunked", new ChunkSection { ChunkSize = chunkSize, Placement = ChunkPlacement.Dynamic });
        var layout = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(tightConfig, choice, null, host), suggestKnobs: false).Layout!;
        long chunkBytes = layout.ChunkSize * PatrickStar.Runtime.TensorMemory.ElementSize(PatrickStar.Training.PlainEngine.ComputeType(config.Precision));
        // Two chunks at least: in backward the LM head's chunk (the tied embedding) is still computing when ln_f's is fetched.
        long budget = Math.Max(2, (layout.ChunkCount + 1) / 2) * chunkBytes + nonModel + nonModel / 10;
        // The estimator's device need at this budget (activations estimated, not measured, hence often higher).
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(tightConfig, choice, budget, host), suggestKnobs: false);
        long estimatorNeed = estimate.Tiers.FirstOrDefault(t => t.Tier == "device")?.Needed ?? 0;
        return Math.Max(budget, estimatorNeed);
    }

    /// <summary>The configuration every run of the part starts from (engine and budgets set per run).</summary>
    public static TrainingConfig Config(BenchSettings s, Precision precision) => new()
    {
        Model = BenchModel.Section(s.Family, s.Seq, s.Layers, s.Hidden, s.Heads, s.KvHeads),
        MicroBatchSize = s.Batch,
        SequenceLength = s.Seq,
        Steps = s.WarmupSteps + s.Steps,
        Precision = precision,
        Eval = new EvalSection { Interval = 0 },
    };

    private static string Describe(ModelChoice m) =>
        m.Llama is { } l ? $"LLaMA ({l.KvHeads} key/value heads, MLP {l.Intermediate})" : "GPT";

    private static TrainingConfig WithEngine(TrainingConfig c, string engine, ChunkSection? chunks = null) => new()
    {
        Model = c.Model, MicroBatchSize = c.MicroBatchSize, SequenceLength = c.SequenceLength, Steps = c.Steps,
        Precision = c.Precision, Eval = c.Eval, Engine = engine, Chunks = chunks ?? new ChunkSection(),
    };

    /// <summary>
    /// The plain trainer. Its memory is measured: glibc's in-use bytes sampled in the background during the warm-up
    /// steps (Adam's state appears at the first step) minus the reading before the model was built; the sampler stops
    /// before the measured steps so that it costs them nothing.
    /// </summary>
    private static RunResult MeasurePlain(TrainingConfig config, TokenDataset data, BenchSettings s)
    {
        var result = new RunResult { Label = "plain", Engine = "plain" };
        BenchContext.Progress("  plain trainer...");
        Collect();
        long baseline = MemoryMeter.NativeInUse();
        using var sampler = new PeakSampler();
        using var run = GptRun.Create(WithEngine(config, "plain"), data);
        sampler.Start();
        long peak = 0;
        run.Trainer.StepCompleted += m =>
        {
            Record(result, m, s);
            if (m.Step == s.WarmupSteps)
            {
                peak = sampler.TakePeak();
                sampler.Stop();
            }
        };
        var summary = run.Trainer.Run();
        if (sampler.IsRunning) peak = sampler.TakePeak(); // fewer steps than warm-up: the whole run was sampled
        result.FirstLoss = summary.FirstLoss;
        result.LastLoss = summary.LastLoss;
        result.PeakDevice = Math.Max(0, peak - baseline);
        return result;
    }

    private static RunResult MeasureChunked(TrainingConfig config, TokenDataset data, BenchSettings s, string label, ChunkPlacement placement,
        long device, long host, long? chunkSize = null)
    {
        chunkSize ??= s.ChunkSize;
        var result = new RunResult
        {
            Label = label, Engine = "chunked", Placement = placement.ToString().ToLowerInvariant(), DeviceBudget = device, HostBudget = host,
        };
        BenchContext.Progress($"  {label}: device budget {Bytes.Format(device)}, host budget {Bytes.Format(host)}...");
        Collect();
        try
        {
            var chunks = new ChunkSection { Placement = placement, DeviceMemory = device, HostMemory = host, ChunkSize = chunkSize };
            using var run = GptRun.Create(WithEngine(config, "chunked", chunks), data);
            var engine = (ChunkedEngine)run.Engine;
            run.Trainer.StepCompleted += m => Record(result, m, s);
            var summary = run.Trainer.Run();
            result.FirstLoss = summary.FirstLoss;
            result.LastLoss = summary.LastLoss;
            // The engine's own accounting, of the last iteration: chunk bytes plus the non-model bytes it measured.
            var last = (result.MeasuredStatistics.Count > 0 ? result.MeasuredStatistics[^1] : engine.Statistics).Chunks?.LastIteration;
            result.PeakDevice = last?.PeakDeviceBytes ?? 0;
            result.PeakDeviceModel = last?.PeakDeviceModelBytes ?? 0;
            result.PeakDeviceNonModel = last?.PeakDeviceNonModelBytes ?? 0;
            result.PeakHost = engine.HostTier.PeakInUseBytes;
            result.DeviceTierPeakInUse = engine.DeviceTier.PeakInUseBytes;
            result.Chunks = engine.Layout.ChunkCount;
            result.ChunkElements = engine.Layout.ChunkSize;
        }
        catch (Exception e) when (e is TierBudgetExceededException or PatrickStar.Profiling.InsufficientMemoryException)
        {
            // A budget the engine cannot train under is a result of the benchmark, not a failure of it.
            result.Error = e.Message;
            BenchContext.Progress($"  {label} does not train under this budget: {e.Message}");
        }
        return result;
    }

    private static void Record(RunResult result, PatrickStar.Training.StepMetrics m, BenchSettings s)
    {
        result.AllSeconds.Add(m.StepSeconds);
        // CPU time and page faults between consecutive step ends: one step (and its metrics) each.
        var counters = ProcessCounters.Read();
        if (m.Step > s.WarmupSteps && counters is { } now && result.LastCounters is { } before) result.MeasuredCounters.Add(now - before);
        result.LastCounters = counters;
        if (m.Step <= s.WarmupSteps) return;
        result.MeasuredSeconds.Add(m.StepSeconds);
        result.MeasuredStatistics.Add(m.EngineStatistics);
        if (m.Phases is not null) result.MeasuredPhases.Add(m.Phases);
    }

    private static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
