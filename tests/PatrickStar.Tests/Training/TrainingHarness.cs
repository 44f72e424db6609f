using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;

namespace PatrickStar.Tests.Training;

/// <summary>Small, fast runs for trainer tests: a tiny GPT over a learnable token sequence.</summary>
internal static class TrainingHarness
{
    public const int Vocab = 64;

    /// <summary>A sequence with structure a model can learn: a fixed pseudo-random cycle of 40 tokens.</summary>
    public static TokenDataset CyclicData()
    {
        var rng = new SplitMix64(5);
        var cycle = Enumerable.Range(0, 40).Select(_ => (int)rng.NextBelow(Vocab)).ToArray();
        var tokens = Enumerable.Range(0, 4000).Select(i => cycle[i % cycle.Length]).ToArray();
        return TokenDataset.FromTokens(tokens, Vocab, 0.1, "cycle");
    }

    public static TrainingConfig Config(int steps, Precision precision = Precision.Fp32, long seed = 7) => new()
    {
        Model = new ModelSection { Preset = null, VocabSize = Vocab, ContextLength = 32, Layers = 2, Hidden = 32, Heads = 4, Dropout = 0.0 },
        MicroBatchSize = 8,
        SequenceLength = 32,
        Steps = steps,
        Precision = precision,
        Seed = seed,
        Optimizer = new OptimizerSection { LearningRate = 1e-2, WeightDecay = 0.01 },
        Scheduler = new SchedulerSection { WarmupSteps = 5 },
        Eval = new EvalSection { Interval = 0 },
        Device = "cpu",
    };

    /// <summary>Runs a config to the end and returns every step's loss.</summary>
    public static List<double> Losses(TrainingConfig config, TokenDataset? data = null)
    {
        using var run = GptRun.Create(config, data ?? CyclicData());
        var losses = new List<double>();
        run.Trainer.StepCompleted += m => losses.Add(m.Loss);
        run.Trainer.Run();
        return losses;
    }

    /// <summary>Two trainings agree: every step's loss and every final parameter within 1e-5 (relative; parameters to at least 1e-5 absolute).</summary>
    public static void AssertSameTraining(IReadOnlyList<double> losses, IReadOnlyList<TorchSharp.torch.Tensor> parameters,
        IReadOnlyList<double> otherLosses, IReadOnlyList<TorchSharp.torch.Tensor> otherParameters)
    {
        for (int i = 0; i < losses.Count; i++)
            Xunit.Assert.True(Math.Abs(losses[i] - otherLosses[i]) <= 1e-5 * Math.Abs(losses[i]), $"step {i + 1}: {losses[i]} vs {otherLosses[i]}");
        for (int i = 0; i < parameters.Count; i++)
        {
            using var diff = (parameters[i] - otherParameters[i]).abs().max();
            using var scale = parameters[i].abs().max();
            Xunit.Assert.True(diff.item<float>() <= 1e-5 * Math.Max(1.0, scale.item<float>()), $"parameter {i} differs by {diff.item<float>()}");
        }
    }
}
