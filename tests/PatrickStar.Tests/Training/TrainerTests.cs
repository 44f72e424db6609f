using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using PatrickStar.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

public class TrainerTests
{
    public TrainerTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void Fp32TrainingDrivesTheLossFarBelowChance()
    {
        var losses = TrainingHarness.Losses(TrainingHarness.Config(steps: 80));
        double chance = Math.Log(TrainingHarness.Vocab); // 4.16: what an untrained model scores
        Assert.InRange(losses[0], chance - 0.5, chance + 1.0);
        Assert.True(losses[^1] < 0.5, $"final loss {losses[^1]:F3} should be far below chance {chance:F2}");
    }

    [Fact]
    public void Bf16MixedPrecisionTrainsToo()
    {
        var losses = TrainingHarness.Losses(TrainingHarness.Config(steps: 60, Precision.Bf16));
        Assert.True(losses[^1] < 1.0, $"bf16 final loss {losses[^1]:F3}");
    }

    [Fact]
    public void SameSeedGivesIdenticalLosses()
    {
        // Dropout on: its random masks must be reproducible too.
        var config = TrainingHarness.Config(steps: 8);
        config.Model.Dropout = 0.1;
        var a = TrainingHarness.Losses(config);
        var b = TrainingHarness.Losses(config);
        Assert.Equal(a, b);
        config.Seed = 8;
        var c = TrainingHarness.Losses(config);
        Assert.NotEqual(a, c);
    }

    /// <summary>Runs <paramref name="steps"/> steps validating at <paramref name="interval"/>; the steps that reported a validation loss.</summary>
    private static (List<int> Validated, TrainingSummary Summary) Validated(int steps, int interval, int batches)
    {
        var config = TrainingHarness.Config(steps);
        config.Eval = new EvalSection { Interval = interval, Batches = batches };
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var withVal = new List<int>();
        run.Trainer.StepCompleted += m => { if (m.ValidationLoss is not null) withVal.Add(m.Step); };
        return (withVal, run.Trainer.Run());
    }

    [Fact]
    public void ValidationLossIsReportedAtTheInterval()
    {
        var (withVal, summary) = Validated(steps: 6, interval: 3, batches: 2);
        Assert.Equal(new[] { 1, 3, 6 }, withVal);
        Assert.True(summary.LastValidationLoss < summary.FirstValidationLoss);
    }

    [Fact]
    public void EvalIntervalZeroNeverValidates()
    {
        var (withVal, summary) = Validated(steps: 3, interval: 0, batches: 1);
        Assert.Empty(withVal);
        Assert.Null(summary.LastValidationLoss);
    }

    [Fact]
    public void AccumulatedMicroBatchesGiveTheFullBatchGradient()
    {
        var config = TrainingHarness.Config(steps: 1);
        var data = TrainingHarness.CyclicData();
        var (x, y) = data.Batch(PatrickStar.Data.Split.Train, 8, 32, new PatrickStar.Data.SplitMix64(3), CPU);

        Tensor[] Gradients(int parts)
        {
            manual_seed(1);
            using var model = new GptModel(GptRun.ResolveModel(config));
            using var engine = new PlainEngine(model, config, CPU);
            for (int p = 0; p < parts; p++)
            {
                using var scope = NewDisposeScope();
                long n = 8 / parts;
                var loss = LanguageModelLoss.CrossEntropy(model.call(x.narrow(0, p * n, n)), y.narrow(0, p * n, n));
                engine.Backward(loss / parts);
            }
            return model.parameters().Select(q => q.grad!.clone()).ToArray();
        }

        var full = Gradients(1);
        var accumulated = Gradients(4);
        for (int i = 0; i < full.Length; i++)
            Assert.True(full[i].allclose(accumulated[i], rtol: 1e-4, atol: 1e-6), $"gradient {i} differs");
    }

    [Fact]
    public void Bf16EngineKeepsFp32MastersAndRefreshesTheModelFromThem()
    {
        var config = TrainingHarness.Config(steps: 3, Precision.Bf16);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = Assert.IsType<PlainEngine>(run.Engine);
        var slots = engine.Optimizer.Slots;
        var parameters = run.Model.parameters().ToList();
        Assert.Equal(parameters.Count, slots.Count);
        for (int i = 0; i < slots.Count; i++)
        {
            Assert.Equal(ScalarType.BFloat16, parameters[i].dtype);
            Assert.Equal(ScalarType.Float32, slots[i].Weight.dtype);
            using var rounded = slots[i].Weight.to(ScalarType.BFloat16);
            Assert.True(rounded.Same(parameters[i]), $"{slots[i].Name} is not its master rounded to bf16");
        }
    }
}

public class OptimizerTests
{
    public OptimizerTests() => TorchRuntime.EnsureLoaded();

    [Theory]
    [InlineData(OptimizerType.AdamW)]
    [InlineData(OptimizerType.Adam)]
    public void TensorAdamMatchesTorchOptimizers(OptimizerType type)
    {
        manual_seed(9);
        var shapes = new[] { new long[] { 5, 7 }, new long[] { 13 } };
        var ours = shapes.Select(s => randn(s)).ToArray();
        var theirs = ours.Select(t => new Parameter(t.clone())).ToArray();
        var adam = new TensorAdam(new AdamSettings(type, 0.9, 0.95, 1e-8, 0.1));
        for (int i = 0; i < ours.Length; i++) adam.Add($"p{i}", ours[i], decay: true);
        torch.optim.Optimizer reference = type == OptimizerType.AdamW
            ? torch.optim.AdamW(theirs, lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1)
            : torch.optim.Adam(theirs, lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1);
        for (int step = 0; step < 5; step++)
        {
            var grads = shapes.Select(s => randn(s)).ToArray();
            for (int i = 0; i < grads.Length; i++) theirs[i].grad = grads[i].clone();
            reference.step();
            adam.Step(grads, 0.01);
        }
        for (int i = 0; i < ours.Length; i++)
            Assert.True(ours[i].allclose(theirs[i], rtol: 1e-5, atol: 1e-6), $"parameter {i} differs from torch's {type}");
        Assert.Equal(5, adam.StepCount);
    }

    [Fact]
    public void ClippingMatchesTorchClipGradNorm()
    {
        manual_seed(4);
        var grads = new[] { randn(10, 10) * 3, randn(7) * 3 };
        var reference = grads.Select(g => new Parameter(zeros_like(g))).ToArray();
        for (int i = 0; i < grads.Length; i++) reference[i].grad = grads[i].clone();
        double theirNorm = torch.nn.utils.clip_grad_norm_(reference, 1.0);
        double ourNorm = GradientClipping.GlobalNorm(grads);
        GradientClipping.Scale(grads, ourNorm, 1.0);
        Assert.Equal(theirNorm, ourNorm, 4);
        for (int i = 0; i < grads.Length; i++) Assert.True(grads[i].allclose(reference[i].grad!, rtol: 1e-5, atol: 1e-7));
        using var total = sqrt(grads.Select(g => g.square().sum()).Aggregate((a, b) => a + b));
        Assert.InRange(total.item<float>(), 0.999, 1.0001);
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysByCosineToTheFloor()
    {
        var s = new LearningRateSchedule(ScheduleType.WarmupCosine, 1.0, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1);
        Assert.Equal(0.1, s.At(0), 9);
        Assert.Equal(1.0, s.At(9), 9);
        Assert.Equal(1.0, s.At(10), 9);
        Assert.Equal(0.1 + 0.9 * 0.5, s.At(60), 9); // halfway through the decay
        Assert.Equal(0.1, s.At(110), 9);
        Assert.Equal(0.1, s.At(500), 9);
        for (int i = 11; i < 110; i++) Assert.True(s.At(i) < s.At(i - 1));
        var linear = new LearningRateSchedule(ScheduleType.WarmupLinear, 1.0, 0, 100, 0.0);
        Assert.Equal(0.5, linear.At(50), 9);
        Assert.Equal(0.3, new LearningRateSchedule(ScheduleType.Constant, 0.3, 10, 100, 0.1).At(0), 9);
    }
}

public class MatmulPeakTests
{
    [Fact]
    public void ShrinksTheProductToFitTheBudget()
    {
        TorchRuntime.EnsureLoaded();
        var (gflops, n, seconds) = PatrickStar.Benchmarks.MatmulPeak.Run(CPU, ScalarType.Float32, n: 1 << 14, reps: 3, budgetSeconds: 0.5);
        Assert.True(n < 1 << 14, "a 16384^3 product cannot fit half a second on a CPU");
        Assert.InRange(seconds.Count, 1, 3);
        Assert.True(double.IsFinite(gflops) && gflops > 0);
    }
}
