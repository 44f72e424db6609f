using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.DeviceTests;

/// <summary>The chunk engine on the test device against the plain trainer: same training under a budget that evicts, read-ahead
/// on and off, hybrid Adam on the device against Adam on the host, static placement.</summary>
public class ChunkedTrainingTests
{
    private sealed record Run(List<double> Losses, List<Tensor> Parameters, List<ChunkIterationStatistics> Iterations, int OptimizerChunksOnDevice, int Chunks);

    private static Run Train(TrainingConfig config)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var losses = new List<double>();
        var iterations = new List<ChunkIterationStatistics>();
        run.Trainer.StepCompleted += m =>
        {
            losses.Add(m.Loss);
            if (m.EngineStatistics.Chunks?.LastIteration is { } i) iterations.Add(i);
        };
        run.Trainer.Run();
        var engine = run.Engine as ChunkedEngine;
        Assert.Equal(TestDevice.Get().type, run.Engine.Device.type);
        var parameters = run.Model.parameters().Select(p => p.detach().to(ScalarType.Float32).cpu().clone()).ToList();
        return new Run(losses, parameters, iterations, engine?.OptimizerChunksOnDevice.Count ?? 0, engine?.ChunkCount ?? 0);
    }

    private static readonly Dictionary<Precision, long> TightBudgets = new();

    /// <summary>A device budget with room for about two chunks beyond the non-model peak measured on this device.</summary>
    private static long TightBudget(Precision precision = Precision.Fp32)
    {
        if (TightBudgets.TryGetValue(precision, out long known)) return known;
        var config = TestDevice.Chunked(TestDevice.Gpt(steps: 2, precision), 1L << 30);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;
        long peakNonModel = Math.Max(engine.Trace.PeakNonModel, engine.PeakNonModelObserved);
        long chunkBytes = TestDevice.ChunkElements * (precision == Precision.Fp32 ? 4 : 2);
        // Never below the estimator's device need: below it GptRun.Create refuses the run before it starts.
        long estimated = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, run.ModelConfig, 1L << 30, 1L << 30), suggestKnobs: false)
            .Tiers.Single(t => t.Tier == "device").Needed;
        return TightBudgets[precision] = Math.Max(2 * peakNonModel + 2 * chunkBytes, estimated);
    }

    private static double MaxDifference(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b)
    {
        double max = 0;
        for (int i = 0; i < a.Count; i++)
        {
            using var d = (a[i] - b[i]).abs().max();
            max = Math.Max(max, d.item<float>());
        }
        return max;
    }

    /// <summary>Every step's loss within <paramref name="tolerance"/> (relative), every final parameter within it (absolute; 10x in bf16).</summary>
    private static void AssertClose(Run expected, Run actual, double tolerance, double parameterTolerance = 0)
    {
        Assert.Equal(expected.Losses.Count, actual.Losses.Count);
        for (int i = 0; i < expected.Losses.Count; i++)
            Assert.True(Math.Abs(expected.Losses[i] - actual.Losses[i]) <= tolerance * Math.Abs(expected.Losses[i]),
                $"step {i + 1}: loss {expected.Losses[i]} vs {actual.Losses[i]}");
        double diff = MaxDifference(expected.Parameters, actual.Parameters);
        Assert.True(diff <= Math.Max(tolerance, parameterTolerance), $"parameters differ by up to {diff}");
    }

    [Theory]
    [InlineData(Precision.Fp32, 1e-5, 0)]
    [InlineData(Precision.Bf16, 5e-3, 5e-2)] // bf16 parameters: a master an ulp apart rounds to another bf16 value
    public void UnderABudgetThatEvictsChunkedTrainsAsThePlainTrainer(Precision precision, double tolerance, double parameterTolerance)
    {
        var plain = Train(TestDevice.Gpt(steps: 4, precision));
        long budget = TightBudget(precision);
        var chunked = Train(TestDevice.Chunked(TestDevice.Gpt(steps: 4, precision), budget));
        Assert.True(plain.Losses[^1] < plain.Losses[0], $"the plain trainer must learn ({plain.Losses[0]} -> {plain.Losses[^1]})");
        AssertClose(plain, chunked, tolerance, parameterTolerance);
        foreach (var i in chunked.Iterations.Skip(1))
        {
            Assert.True(i.Evictions > 0 && i.BytesToDevice > 0 && i.BytesToHost > 0, "every iteration must move chunks both ways under this budget");
            Assert.True(i.PeakDeviceBytes <= budget, $"device peak {i.PeakDeviceBytes:N0} B exceeds the budget {budget:N0} B");
        }
    }

    [Fact]
    public void ReadAheadTrainsAsWithoutAndServesFetches()
    {
        long budget = TightBudget();
        var offConfig = TestDevice.Chunked(TestDevice.Gpt(steps: 3), budget);
        offConfig.Chunks.Prefetch = false;
        var off = Train(offConfig);
        var on = Train(TestDevice.Chunked(TestDevice.Gpt(steps: 3), budget));
        // The same kernels on the same values: bit for bit (a chunk used before its copy arrived would show here).
        Assert.Equal(off.Losses, on.Losses);
        Assert.Equal(0, MaxDifference(off.Parameters, on.Parameters));
        Assert.All(off.Iterations, i => Assert.Equal(0, i.PrefetchBytes));
        Assert.All(on.Iterations.Skip(1), i => Assert.True(i.PrefetchHits > 0 && i.PrefetchBytes > 0, "the read-ahead must serve fetches"));
    }

    [Fact]
    public void HybridAdamOnTheDeviceMatchesAdamOnTheHost()
    {
        TrainingConfig Config(bool hybrid)
        {
            var c = TestDevice.Chunked(TestDevice.Gpt(steps: 3), 1L << 30);
            c.Chunks.HybridAdam = hybrid;
            return c;
        }
        var host = Train(Config(hybrid: false));
        var device = Train(Config(hybrid: true));
        Assert.Equal(0, host.OptimizerChunksOnDevice);
        Assert.Equal(device.Chunks, device.OptimizerChunksOnDevice);
        // On a CPU device the SIMD kernel updates both (same bits); on a GPU tensor ops on the device: float rounding apart.
        AssertClose(host, device, 1e-5);
    }

    [Fact]
    public void StaticPlacementKeepsEveryParameterChunkOnTheDevice()
    {
        var plain = Train(TestDevice.Gpt(steps: 3));
        var config = TestDevice.Chunked(TestDevice.Gpt(steps: 3), 1L << 30);
        config.Chunks.Placement = ChunkPlacement.Static;
        var pinned = Train(config);
        AssertClose(plain, pinned, 1e-5);
        Assert.All(pinned.Iterations.Skip(1), i =>
        {
            Assert.Equal(0, i.Evictions);
            Assert.Equal(pinned.Chunks, i.DeviceChunksResident);
        });
    }
}
