using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Estimation;

public class MemoryEstimatorTests
{
    private readonly ITestOutputHelper output;

    public MemoryEstimatorTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    [Fact]
    public void ParameterSpecsMatchTheRealModel()
    {
        var config = new GptConfig(97, 24, 3, 48, 4);
        using var model = new GptModel(config);
        var real = model.named_parameters().Select(p => (p.name, p.parameter.numel())).ToList();
        var listed = GptParameterSpecs.List(config);
        Assert.Equal(real.Count, listed.Count);
        Assert.Equal(real.OrderBy(r => r.name), listed.Select(s => (s.Name, s.Numel)).OrderBy(r => r.Item1));
        Assert.Equal(config.ParameterCount, listed.Sum(s => s.Numel));
        Assert.Equal(ChunkSizeSearch.Best(real.Select(r => new TensorSpec(r.name, r.Item2)).ToList()).ChunkSize, ChunkSizeSearch.Best(listed).ChunkSize);
    }

    [Theory]
    [InlineData(2, 32, 4, 64, null, 1)]
    [InlineData(3, 96, 4, 500, 65_536L, 2)]
    [InlineData(2, 128, 8, 1000, null, 1)]
    public void ModelDataMatchesTheEnginesChunks(int layers, int hidden, int heads, int vocab, long? chunkSize, int accumulation)
    {
        var config = TrainingHarness.Config(steps: 1);
        config.Model = new ModelSection { Preset = null, VocabSize = vocab, ContextLength = 32, Layers = layers, Hidden = hidden, Heads = heads, Dropout = 0 };
        config.Engine = "chunked";
        config.GradientAccumulationSteps = accumulation;
        config.Chunks = new ChunkSection { ChunkSize = chunkSize, DeviceMemory = 1L << 30, HostMemory = 1L << 30 };
        var sizes = GptRun.ResolveModel(config);
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, sizes, 1L << 30, 1L << 30));
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        using var engine = ChunkedEngine.Initialize(() => new GptModel(sizes), config, sample);
        long real = engine.DeviceTier.UsedBytes + engine.HostTier.UsedBytes;
        output.WriteLine($"L{layers} h{hidden} V{vocab}: estimated {estimate.ModelDataBytes:N0}, engine {real:N0}; {estimate.Layout}; engine {engine.Layout}");
        Assert.Equal(engine.Layout.ChunkSize, estimate.Layout!.ChunkSize);
        Assert.Equal(engine.Layout.Placements.Select(p => (p.Name, p.Chunk, p.Offset)), estimate.Layout.Placements.Select(p => (p.Name, p.Chunk, p.Offset)));
        Assert.InRange((double)estimate.ModelDataBytes / real, 0.95, 1.05);
    }

    [Fact]
    public void RanksShardTheChunks()
    {
        var model = ModelZoo.Get("gpt2").Config;
        // As the engine: the layout is the one-rank layout, padded with empty chunks to a multiple of the ranks.
        var one = MemoryEstimator.Estimate(new EstimateRequest(model, Precision.Fp32, 1, 128, false, 1, 8L << 30, 8L << 30, ChunkSize: 40_000_000));
        var four = MemoryEstimator.Estimate(new EstimateRequest(model, Precision.Fp32, 1, 128, false, 1, 8L << 30, 8L << 30, Ranks: 4, ChunkSize: 40_000_000));
        int chunks = one.Layout!.ChunkCount;
        Assert.True(chunks >= 3, one.Layout.Describe());
        Assert.Equal(one.ModelDataBytes / chunks * ((chunks + 3) / 4), four.ModelDataBytes);
    }

    [Fact]
    public void AHostTooSmallIsShortByTheModelDataAndMoreHostMemoryFixesIt()
    {
        var model = ModelZoo.Get("gpt2").Config;
        var e = MemoryEstimator.Estimate(new EstimateRequest(model, Precision.Fp32, 2, 128, false, 1, 4L << 30, 1L << 30));
        output.WriteLine(e.Explain());
        Assert.False(e.Fits);
        var host = e.Tiers.Single(t => t.Tier == "host");
        Assert.Equal(e.ModelDataBytes - (1L << 30), host.Short);
        var knob = Assert.Single(e.Knobs, k => k.Flags.StartsWith("--host-memory"));
        Assert.True(knob.Result.Fits);
        Assert.Contains(e.Knobs, k => k.Flags.StartsWith("--ranks"));
        Assert.Contains("host needs", e.Explain());
    }

    [Fact]
    public void TheStartUpCheckCountsRanks()
    {
        // gpt2 in four chunks of 40M elements: 2.4 GiB of chunked model data; a 1 GiB host holds one rank's share of four.
        var config = TrainingHarness.Config(steps: 1);
        config.Model = new ModelSection { Preset = "gpt2" };
        config.Engine = "chunked";
        config.MicroBatchSize = 1;
        config.Chunks = new ChunkSection { ChunkSize = 40_000_000, DeviceMemory = 8L << 30, HostMemory = 1L << 30 };
        var sizes = GptRun.ResolveModel(config);
        Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.EnsureFits(config, sizes, CPU, ranks: 1));
        var four = GptRun.EnsureFits(config, sizes, CPU, ranks: 4);
        Assert.Equal(4, four.Request.Ranks);
    }

    [Fact]
    public void ACombinationOfKnobsIsSuggestedWhenNoSingleOneFitsAndIsReChecked()
    {
        var model = ModelZoo.Get("gpt2").Config;
        EstimateRequest At(long? device, Precision p = Precision.Fp32, bool ckpt = false) =>
            new(model, p, 4, 1024, ckpt, 1, device, 8L << 30);
        long Need(EstimateRequest r) => MemoryEstimator.Estimate(r, suggestKnobs: false).Tiers.Single(t => t.Tier == "device").Needed;
        long both = Need(At(4L << 30, Precision.Bf16Fp32, ckpt: true));
        // The premise: neither change alone is enough at the budget both together need.
        long precisionOnly = Need(At(both, Precision.Bf16Fp32)), checkpointingOnly = Need(At(both, ckpt: true));
        Assert.True(both < precisionOnly && both < checkpointingOnly, $"both {both}, bf16-fp32 alone {precisionOnly}, checkpointing alone {checkpointingOnly}");

        var e = MemoryEstimator.Estimate(At(both));
        output.WriteLine(e.Explain());
        Assert.False(e.Fits);
        var combined = Assert.Single(e.Knobs, k => k.Flags == "--precision bf16-fp32 --checkpointing");
        Assert.True(combined.Result.Fits);
        Assert.Contains(" + ", combined.Change);
        Assert.DoesNotContain(e.Knobs, k => k.Flags is "--precision bf16-fp32" or "--checkpointing");
    }

    [Fact]
    public void AnImpossibleRunIsRefusedAtStartUpWithTheExplanation()
    {
        var config = TrainingHarness.Config(steps: 1);
        config.Engine = "chunked";
        config.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = 100_000, HostMemory = 1L << 30 };
        var e = Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.Create(config, TrainingHarness.CyclicData()));
        output.WriteLine(e.Message);
        Assert.Contains("device needs", e.Message);
        Assert.Contains("100,000 bytes", e.Message);
        Assert.Contains("--device-memory", e.Message);

        config.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = 1L << 30, HostMemory = 10_000 };
        var h = Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.Create(config, TrainingHarness.CyclicData()));
        Assert.Contains("host needs", h.Message);
        Assert.Contains("--host-memory", h.Message);
    }
}
