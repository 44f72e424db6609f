using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>The plain trainer's fused SIMD Adam against its tensor-op update.</summary>
public class FusedAdamPlainTests
{
    private readonly ITestOutputHelper output;

    public FusedAdamPlainTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <summary>
    /// Five training steps of the fused engine. Before each, a tensor-op engine is given the same state (masters, hence
    /// parameters, momentum, variance, step count) and the same batch; after it, every state tensor and parameter of the two
    /// must agree (the parameters are checked against their own masters). Syncing per step compares the update itself: left alone, two runs drift apart by more than the update's
    /// rounding, because a bf16 parameter one rounding apart changes the next gradients.
    /// </summary>
    [Theory]
    [InlineData(Precision.Fp32, 1)]
    [InlineData(Precision.Bf16, 1)]
    [InlineData(Precision.Bf16, 2)]
    public void FusedKernelEqualsTheTensorOpUpdateOverFiveSteps(Precision precision, int microBatches)
    {
        var config = TrainingHarness.Config(steps: 5, precision);
        config.GradientClipping = 0.05; // clips at every step: the gradient multiplier is exercised
        var data = TrainingHarness.CyclicData();
        using var fused = GptRun.Create(config, data);
        using var tensorOps = GptRun.Create(config, data);
        var fusedEngine = Assert.IsType<PlainEngine>(fused.Engine);
        var tensorEngine = Assert.IsType<PlainEngine>(tensorOps.Engine);
        Assert.True(fusedEngine.FusedCpuAdam);
        tensorEngine.FusedCpuAdam = false;

        double worst = 0;
        for (int step = 0; step < 5; step++)
        {
            Sync(fusedEngine, tensorEngine);
            Train(fusedEngine, data, step, microBatches);
            Train(tensorEngine, data, step, microBatches);
            worst = Math.Max(worst, WorstDifference(fusedEngine, tensorEngine));
            AssertParametersAreRoundedMasters(fusedEngine);
        }
        output.WriteLine($"{precision}, {microBatches} micro-batch(es): worst relative difference {worst:E2}");
        Assert.True(worst <= 1e-6, $"fused and tensor-op Adam differ by {worst:E2} (relative) within 5 steps");
    }

    /// <summary>Gives <paramref name="to"/> the optimizer state of <paramref name="from"/> (masters, hence parameters, momentum, variance, step count).</summary>
    internal static void Sync(PlainEngine from, PlainEngine to)
    {
        to.OptimizerStepCount = from.OptimizerStepCount;
        foreach (var name in from.ParameterNames)
            foreach (var kind in new[] { StateKind.Master, StateKind.Momentum, StateKind.Variance })
            {
                using var value = from.ReadState(name, kind);
                to.WriteState(name, kind, value);
            }
    }

    /// <summary>One optimizer step over <paramref name="microBatches"/> micro-batches (bf16 sums them in fp32 accumulators).</summary>
    private static void Train(PlainEngine engine, TokenDataset data, int step, int microBatches)
    {
        var rng = new SplitMix64(step + 1);
        for (int i = 0; i < microBatches; i++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = data.Batch(Split.Train, 8, 32, rng, engine.Device);
            engine.Backward(LanguageModelLoss.CrossEntropy(engine.Model.call(x), y) / microBatches);
        }
        engine.Step(1e-2);
    }

    private static double WorstDifference(PlainEngine a, PlainEngine b)
    {
        double worst = 0;
        foreach (var name in a.ParameterNames)
            foreach (var kind in new[] { StateKind.Master, StateKind.Momentum, StateKind.Variance })
            {
                using var x = a.ReadState(name, kind);
                using var y = b.ReadState(name, kind);
                worst = Math.Max(worst, Relative(x, y));
            }
        return worst;
    }

    /// <summary>
    /// The kernel writes each parameter itself: it must be its new master in the compute dtype, to the bit. (Compared with
    /// the tensor-op engine's parameters instead, a master one fp32 rounding apart may round to the neighbouring bf16.)
    /// </summary>
    private static void AssertParametersAreRoundedMasters(PlainEngine engine)
    {
        var slots = engine.Optimizer.Slots;
        var parameters = engine.Model.parameters().ToList();
        for (int i = 0; i < slots.Count; i++)
        {
            using var rounded = slots[i].Weight.to(parameters[i].dtype);
            Assert.True(rounded.Same(parameters[i]), $"{slots[i].Name} is not its master in {parameters[i].dtype}");
        }
    }

    /// <summary>‖a − b‖ / ‖b‖, in fp64.</summary>
    private static double Relative(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var a64 = a.detach().to(ScalarType.Float64);
        var b64 = b.detach().to(ScalarType.Float64);
        double difference = linalg.vector_norm(a64 - b64).item<double>();
        double size = linalg.vector_norm(b64).item<double>();
        return size == 0 ? difference : difference / size;
    }
}
