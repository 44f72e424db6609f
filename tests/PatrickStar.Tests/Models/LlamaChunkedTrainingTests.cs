using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

/// <summary>LLaMA under the chunk engine (mirrors ChunkedEngineTests' GPT test of a tight budget).</summary>
/// <remarks>Alone, after the parallel tests: the engine measures non-model memory process-wide, and other tests' allocations
/// counted there made the tight budget refuse a fetch (CI, once in 853).</remarks>
[Collection(PatrickStar.Tests.Training.ProcessWideCounters.Name)]
public class LlamaChunkedTrainingTests
{
    private readonly ITestOutputHelper output;

    public LlamaChunkedTrainingTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    // Parameters outweigh activations (about 2.9 M parameters, 2 x 16 tokens); the largest tensor is a 256 x 688 MLP matrix.
    private static readonly LlamaConfig Sizes = new(TrainingHarness.Vocab, ContextLength: 32, Layers: 4, Hidden: 256, Heads: 4, KvHeads: 2, Intermediate: 688);
    private const long ChunkElements = 256 * 688;

    private static TrainingConfig Config(string engine, long deviceMemory) => TightBudgetRun.Config(engine, ChunkElements, deviceMemory);

    private static TightBudgetRun.Outcome Train(TrainingConfig config, int steps) =>
        TightBudgetRun.Train(() => new LlamaForCausalLM(Sizes), config, steps, batch: 2, sequence: 16);

    [Fact]
    public void Fp32UnderATightBudgetMatchesThePlainTrainer()
    {
        var plain = Train(Config("plain", 1L << 30), 4);
        plain.Engine.Dispose();
        // A budget of twice the measured non-model peak plus two chunks: the parameter chunks (about 12 MB) cannot all stay.
        var roomy = Train(Config("chunked", 1L << 30), 1);
        var measured = (ChunkedEngine)roomy.Engine;
        long peakNonModel = Math.Max(measured.Trace.PeakNonModel, measured.PeakNonModelObserved);
        // The estimator lays out the same chunks from the sizes alone, and its non-model figure is near what the engine measured.
        var estimatedLayout = PatrickStar.Chunks.ChunkLayout.Pack(PatrickStar.Models.Estimation.LlamaEstimates.Parameters(Sizes), ChunkElements);
        Assert.Equal(estimatedLayout.UsedPerChunk, measured.Layout.UsedPerChunk);
        long estimatedNonModel = PatrickStar.Models.Estimation.LlamaEstimates.Phases(Sizes, Precision.Fp32, 2, 16, false).Max(p => p.Bytes);
        output.WriteLine($"estimated non-model peak {estimatedNonModel:N0} B, measured {peakNonModel:N0} B");
        // With the estimator's safety margin (the engine's sampled peaks vary by about 10% between runs), at most 2x.
        Assert.InRange(estimatedNonModel * (1 + PatrickStar.Models.Estimation.MemoryEstimator.SafetyMargin), peakNonModel, 2.0 * peakNonModel);
        roomy.Engine.Dispose();
        long budget = 2 * peakNonModel + 2 * ChunkElements * 4;
        output.WriteLine($"peak non-model {peakNonModel:N0} B, budget {budget:N0} B");

        var chunked = Train(Config("chunked", budget), 4);
        chunked.Engine.Dispose();
        TrainingHarness.AssertSameTraining(plain.Losses, plain.Parameters, chunked.Losses, chunked.Parameters);
        foreach (var s in chunked.Stats) Assert.True(s.Chunks?.LastIteration?.Evictions > 0, "every iteration must evict under this budget");
        Assert.True(plain.Losses[^1] < plain.Losses[0], "the loss must fall");
    }
}
