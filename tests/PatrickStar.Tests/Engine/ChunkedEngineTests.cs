using PatrickStar.Training;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

public class ChunkedEngineTests
{
    private readonly ITestOutputHelper output;

    public ChunkedEngineTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private const long ChunkElements = 4096;

    internal static TrainingConfig Chunked(TrainingConfig c, long deviceMemory, int accumulation = 1)
    {
        c.Engine = "chunked";
        c.GradientAccumulationSteps = accumulation;
        c.Chunks = new ChunkSection
        {
            ChunkSize = c.Chunks.ChunkSize ?? ChunkElements,
            DeviceMemory = deviceMemory,
            HostMemory = 1L << 30,
            WarmupDeviceRatio = 0.05, // small enough that the warm-up iteration evicts too
        };
        return c;
    }

    /// <summary>
    /// A GPT whose parameters outweigh its activations (hidden 512, 4 layers, 2 x 16 tokens): about 12.6 M
    /// parameters, 200 MB of model data, 50 MB of parameter chunks, about 10 MB of non-model data.
    /// <paramref name="hidden"/> 256 gives a quarter of that (21 chunks of 1 MiB).
    /// </summary>
    internal static TrainingConfig Bigger(int steps, int hidden = 512)
    {
        var c = TrainingHarness.Config(steps);
        c.Optimizer.LearningRate = 1e-3;
        c.Model.Hidden = hidden;
        c.Model.Heads = 4;
        c.Model.Layers = 4;
        c.MicroBatchSize = 2;
        c.SequenceLength = 16;
        c.Chunks.ChunkSize = 4L * hidden * hidden; // the largest tensor (mlp.c_fc.weight, hidden x 4 hidden)
        return c;
    }

    /// <param name="MeasuredDevicePeak">Chunked runs: the device's peak measured apart from the engine's accounting (<see cref="Run"/>).</param>
    private sealed record RunResult(List<double> Losses, List<Tensor> Parameters, List<EngineStatistics> Stats, long MeasuredDevicePeak, long Budget);

    /// <summary>
    /// What a device budget may be exceeded by in <see cref="RunResult.MeasuredDevicePeak"/>: allocations of the runtime
    /// after the baseline reading that are neither chunks nor the model's non-model data (the trainer's batches and
    /// metrics, handles awaiting the GC), and readings that race a chunk moving between tiers.
    /// </summary>
    private const long RuntimeTolerance = 4L << 20;

    private static RunResult Run(TrainingConfig config)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var losses = new List<double>();
        var stats = new List<EngineStatistics>();
        run.Trainer.StepCompleted += m => { losses.Add(m.Loss); stats.Add(m.EngineStatistics); };
        // The device's footprint measured by the test's own sampler, not the engine's moment-by-moment accounting: on a CPU
        // device both tiers are the process's memory, so it is glibc's in-use bytes less the host tier's buffers and less
        // what the process held before training (libtorch, the model's shell, the data), sampled every ~0.3 ms.
        long measuredPeak = 0;
        if (run.Engine is ChunkedEngine engine)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long baseline = PatrickStar.Profiling.MemoryMeter.NativeInUse() - engine.HostTier.UsedBytes - engine.DeviceTier.UsedBytes;
            using var sampler = new PeakSampler(() => PatrickStar.Profiling.MemoryMeter.NativeInUse() - engine.HostTier.UsedBytes - baseline);
            sampler.Start();
            run.Trainer.Run();
            measuredPeak = sampler.TakePeak();
            sampler.Stop();
        }
        else run.Trainer.Run();
        var parameters = run.Model.parameters().Select(p => p.detach().to(ScalarType.Float32).clone()).ToList();
        return new RunResult(losses, parameters, stats, measuredPeak, config.Chunks.DeviceMemory ?? 0);
    }

    private long TightBudget(TrainingConfig config) => TightBudget(config, output);

    /// <summary>A device budget that leaves room for about three chunks beyond the measured non-model peak.</summary>
    internal static long TightBudget(TrainingConfig config, ITestOutputHelper output)
    {
        config.Steps = 3;
        using var run = GptRun.Create(Chunked(config, 1L << 30), TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;
        long peakNonModel = Math.Max(engine.Trace.PeakNonModel, engine.PeakNonModelObserved);
        long chunkBytes = (config.Chunks.ChunkSize ?? ChunkElements) * (config.Precision == Precision.Bf16 ? 2 : 4);
        // Non-model memory varies between runs (transient peaks caught or not, handles waiting for the GC).
        // Never below the estimator's device need: below it GptRun.Create refuses the run before it starts.
        long estimated = PatrickStar.Models.Estimation.MemoryEstimator.Estimate(
            PatrickStar.Models.Estimation.MemoryEstimator.RequestFor(config, run.ModelConfig, 1L << 30, 1L << 30), suggestKnobs: false)
            .Tiers.Single(t => t.Tier == "device").Needed;
        long budget = Math.Max(2 * peakNonModel + 2 * chunkBytes, estimated);
        output.WriteLine($"peak non-model {peakNonModel:N0} B, {engine.Layout.Describe()}, budget {budget:N0} B (estimated need {estimated:N0} B)");
        return budget;
    }

    [Fact]
    public void Fp32UnderATightBudgetMatchesThePlainTrainer()
    {
        var plain = Run(Bigger(steps: 4));
        long budget = TightBudget(Bigger(steps: 1));
        var chunked = Run(Chunked(Bigger(steps: 4), budget));

        TrainingHarness.AssertSameTraining(plain.Losses, plain.Parameters, chunked.Losses, chunked.Parameters);
        // Evictions happened in every iteration, and the measured device peak stayed within the budget.
        foreach (var s in chunked.Stats)
            output.WriteLine("statistics: " + string.Join("; ", s.Named().OrderBy(kv => kv.Key).Select(kv => kv.Key + "=" + kv.Value.ToString("G6"))));
        foreach (var s in chunked.Stats) Assert.True(s.Chunks!.LastIteration!.Evictions > 0, "every iteration must evict under this budget");
        output.WriteLine($"measured device peak {chunked.MeasuredDevicePeak:N0} B, budget {budget:N0} B");
        Assert.True(chunked.MeasuredDevicePeak <= budget + RuntimeTolerance, $"the device peak measured, {chunked.MeasuredDevicePeak:N0} bytes, exceeds the budget {budget:N0}");
    }

    [Fact]
    public void GradientAccumulationMatchesThePlainTrainer()
    {
        var plainConfig = TrainingHarness.Config(steps: 3);
        plainConfig.GradientAccumulationSteps = 2;
        var plain = Run(plainConfig);
        var chunked = Run(Chunked(TrainingHarness.Config(steps: 3), 1L << 30, accumulation: 2));
        for (int i = 0; i < plain.Losses.Count; i++)
            Assert.True(Math.Abs(plain.Losses[i] - chunked.Losses[i]) <= 1e-5 * Math.Abs(plain.Losses[i]),
                $"step {i + 1}: plain {plain.Losses[i]} vs chunked {chunked.Losses[i]}");
    }

    [Fact]
    public void Bf16LossCurveFollowsThePlainTrainer()
    {
        var plain = Run(TrainingHarness.Config(steps: 8, Precision.Bf16));
        var chunked = Run(Chunked(TrainingHarness.Config(steps: 8, Precision.Bf16), 1L << 30));
        for (int i = 0; i < plain.Losses.Count; i++)
            Assert.True(Math.Abs(plain.Losses[i] - chunked.Losses[i]) <= 0.02, $"step {i + 1}: plain {plain.Losses[i]} vs chunked {chunked.Losses[i]}");
    }

    [Fact]
    public void ABudgetTooSmallForOneModuleFailsAtWarmUpWithTheNumbers()
    {
        var config = Chunked(TrainingHarness.Config(steps: 2), deviceMemory: 1000);
        // GptRun.Create now refuses this before allocating (the estimator); the engine's own check, reached
        // through the library entry point, still stops it at the first moment of warm-up.
        Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.Create(config, TrainingHarness.CyclicData()));
        var sizes = GptRun.ResolveModel(config);
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        using var engine = ChunkedEngine.Initialize(() => new GptModel(sizes), config, sample);
        var e = Assert.Throws<TierBudgetExceededException>(() =>
        {
            using var scope = NewDisposeScope();
            engine.Forward(zeros(2, 8, dtype: ScalarType.Int64));
        });
        output.WriteLine(e.Message);
        Assert.Contains("transformer.wte", e.Message);   // the module and moment
        Assert.Contains("1,000 bytes", e.Message);         // the budget
        Assert.Contains("Raise device_memory", e.Message); // the fix
    }

    [Fact]
    public void ModelDataFourTimesTheDeviceBudgetTrains()
    {
        var config = Bigger(steps: 6);
        config.Model.Layers = 8; // about 300 MB of model data: 4x stays well above twice the measured non-model peak
        long parameters = GptRun.ResolveModel(config).ParameterCount;
        long modelData = parameters * 16;

        long budget = TightBudget(config);
        output.WriteLine($"model data {modelData:N0} B, device budget {budget:N0} B");
        Assert.True(modelData > 4 * budget, $"model data {modelData:N0} must exceed 4x the budget {budget:N0}");
        config.Steps = 8;
        config.Optimizer.LearningRate = 3e-4; // a deep narrow-batch model: a gentler rate trains steadily
        var result = Run(Chunked(config, budget));
        output.WriteLine($"losses {string.Join(", ", result.Losses)}; measured device peak {result.MeasuredDevicePeak:N0}");
        Assert.True(result.Losses.TakeLast(3).Average() < result.Losses[0] - 0.3, "the loss must fall");
        Assert.True(result.MeasuredDevicePeak <= budget + RuntimeTolerance, $"the device peak measured, {result.MeasuredDevicePeak:N0} bytes, exceeds the budget {budget:N0}");
    }

    [Fact]
    public void StaticPlacementPinsParameterChunksAndMatchesThePlainTrainer()
    {
        var plain = Run(TrainingHarness.Config(steps: 3));
        var config = Chunked(TrainingHarness.Config(steps: 3), 1L << 30);
        config.Chunks.Placement = ChunkPlacement.Static;
        var pinned = Run(config);
        for (int i = 0; i < plain.Losses.Count; i++)
            Assert.True(Math.Abs(plain.Losses[i] - pinned.Losses[i]) <= 1e-5 * Math.Abs(plain.Losses[i]));
        // Parameter chunks never move; the only moves are hybrid Adam's, once, at the end of the warm-up
        // (master, momentum and variance of each chunk whose optimizer state fits in the margin).
        var first = pinned.Stats[0].Chunks!.LastIteration!;
        Assert.Equal(3 * first.OptimizerChunksOnDevice, first.ChunkMoves);
        foreach (var s in pinned.Stats)
            Assert.Equal(s.Chunks!.Chunks, s.Chunks.LastIteration!.DeviceChunksResident);
        foreach (var s in pinned.Stats.Skip(1))
            Assert.Equal(0, s.Chunks!.LastIteration!.ChunkMoves);
    }

    [Fact]
    public void TheEngineApiTrainsAModelStepByStep()
    {
        var config = Chunked(TrainingHarness.Config(steps: 1), 1L << 30);
        var sizes = GptRun.ResolveModel(config);
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        using var engine = ChunkedEngine.Initialize(() => new GptModel(sizes), config, sample);
        var data = TrainingHarness.CyclicData();
        var rng = new PatrickStar.Data.SplitMix64(1);
        var losses = new List<float>();
        for (int step = 0; step < 12; step++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = data.Batch(PatrickStar.Data.Split.Train, 8, 32, rng, engine.Device);
            var loss = PatrickStar.Training.LanguageModelLoss.CrossEntropy(engine.Forward(x), y);
            losses.Add(loss.item<float>());
            engine.Backward(loss);
            engine.Step(3e-3);
        }
        Assert.True(losses[^1] < losses[0] - 0.5, $"loss {losses[0]} -> {losses[^1]}");
        Assert.True(engine.Layout.ChunkCount >= 2);
    }

    [Fact]
    public void ActivationCheckpointingGivesTheSameTraining()
    {
        // Dropout on: the recomputation must draw the same masks.
        var reference = TrainingHarness.Config(steps: 4);
        reference.Model.Dropout = 0.1;
        var plain = Run(reference);

        var recomputed = TrainingHarness.Config(steps: 4);
        recomputed.Model.Dropout = 0.1;
        recomputed.ActivationCheckpointing = true;
        var plainCheckpointed = Run(recomputed);

        var chunkedConfig = Chunked(TrainingHarness.Config(steps: 4), 1L << 30);
        chunkedConfig.Model.Dropout = 0.1;
        chunkedConfig.ActivationCheckpointing = true;
        var chunkedCheckpointed = Run(chunkedConfig);

        for (int i = 0; i < plain.Losses.Count; i++)
        {
            Assert.True(Math.Abs(plain.Losses[i] - plainCheckpointed.Losses[i]) <= 1e-5 * plain.Losses[i], $"plain step {i + 1}");
            Assert.True(Math.Abs(plain.Losses[i] - chunkedCheckpointed.Losses[i]) <= 1e-5 * plain.Losses[i], $"chunked step {i + 1}");
        }
        for (int i = 0; i < plain.Parameters.Count; i++)
        {
            using var d1 = (plain.Parameters[i] - plainCheckpointed.Parameters[i]).abs().max();
            using var d2 = (plain.Parameters[i] - chunkedCheckpointed.Parameters[i]).abs().max();
            Assert.True(d1.item<float>() <= 1e-5 && d2.item<float>() <= 1e-5, $"parameter {i}: {d1.item<float>()}, {d2.item<float>()}");
        }
    }
}
