using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>The plain trainer takes the fp32 head's kept d/dW as .grad itself (no copy): the gradients stay those of autograd.</summary>
public class PlainHeadGradientTests
{
    private readonly ITestOutputHelper output;

    public PlainHeadGradientTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <summary>
    /// Five fp32 steps of one and of two micro-batches. Before each, a second plain engine gets the same state; both take the
    /// same batches, one through the blocked head loss (d/dW handed over as .grad), the other through the logits and autograd
    /// (no kept buffer); every gradient must agree within 1e-6 of the largest, then both step. A head that wrote the next
    /// micro-batch's or step's d/dW over the tensor .grad still is would show here.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void BlockedHeadGradientsEqualAutogradsOverFiveSteps(int microBatches)
    {
        var config = TrainingHarness.Config(steps: 5);
        config.GradientAccumulationSteps = microBatches;
        var data = TrainingHarness.CyclicData();
        using var blocked = GptRun.Create(config, data);
        using var reference = GptRun.Create(config, data);
        var ours = Assert.IsType<PlainEngine>(blocked.Engine);
        var theirs = Assert.IsType<PlainEngine>(reference.Engine);

        double worst = 0;
        for (int step = 0; step < 5; step++)
        {
            FusedAdamPlainTests.Sync(ours, theirs);
            var rng = new SplitMix64(step + 1);
            for (int i = 0; i < microBatches; i++)
            {
                using var scope = NewDisposeScope();
                var (x, y) = data.Batch(Split.Train, 8, 32, rng, CPU);
                ours.Backward(LanguageModelLoss.Of(ours.Model, x, y) / microBatches);
                theirs.Backward(LanguageModelLoss.CrossEntropy(theirs.Model.call(x), y) / microBatches);
            }
            worst = Math.Max(worst, WorstGradientDifference(ours, theirs, step));
            ours.Step(1e-2);
            theirs.Step(1e-2);
        }
        output.WriteLine($"{microBatches} micro-batch(es): worst gradient difference {worst:E2} of the largest");
    }

    private static double WorstGradientDifference(PlainEngine ours, PlainEngine theirs, int step)
    {
        double worst = 0;
        var expected = theirs.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in ours.Model.named_parameters())
        {
            using var scope = NewDisposeScope();
            using var actual = p.grad;
            using var want = expected[name].grad;
            Assert.True(actual is not null && want is not null, $"step {step + 1}, {name}: no gradient");
            double scale = want.abs().max().item<float>();
            double difference = (actual - want).abs().max().item<float>() / Math.Max(scale, 1e-30);
            Assert.True(difference <= 1e-6, $"step {step + 1}, {name}: gradients differ by {difference:E2} of the largest (1e-6 allowed)");
            worst = Math.Max(worst, difference);
        }
        return worst;
    }
}
