using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Training;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Tests.Training;

/// <summary>Short trainings of a model on the cyclic data, by either engine, for comparing the chunk engine under a tight budget with the plain one.</summary>
internal static class TightBudgetRun
{
    public sealed record Outcome(List<double> Losses, List<Tensor> Parameters, List<EngineStatistics> Stats, ITrainingEngine Engine);

    public static TrainingConfig Config(string engine, long chunkElements, long deviceMemory)
    {
        var c = TrainingHarness.Config(steps: 4);
        c.Engine = engine;
        c.Chunks = new ChunkSection { ChunkSize = chunkElements, DeviceMemory = deviceMemory, HostMemory = 1L << 30, WarmupDeviceRatio = 0.05 };
        return c;
    }

    /// <summary>Builds the model (seed 11), trains it <paramref name="steps"/> steps at lr 1e-3, and returns the losses, the final parameters (fp32 copies) and the engine, still open.</summary>
    /// <param name="editInput">Changes each input batch in place before the step (null: none).</param>
    public static Outcome Train(Func<Module<Tensor, Tensor>> build, TrainingConfig config, int steps, int batch, int sequence, Action<Tensor>? editInput = null)
    {
        manual_seed(11);
        var model = build();
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        var engine = EngineFactory.Create(model, config, CPU, sample);
        var data = TrainingHarness.CyclicData();
        var rng = new PatrickStar.Data.SplitMix64(1);
        var losses = new List<double>();
        var stats = new List<EngineStatistics>();
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = data.Batch(PatrickStar.Data.Split.Train, batch, sequence, rng, engine.Device);
            editInput?.Invoke(x);
            var loss = LanguageModelLoss.Of(engine.Model, x, y);
            losses.Add(loss.item<float>());
            engine.Backward(loss);
            engine.Step(1e-3);
            stats.Add(engine.Statistics);
        }
        var parameters = model.parameters().Select(p => p.detach().to(ScalarType.Float32).clone()).ToList();
        return new Outcome(losses, parameters, stats, engine);
    }
}
