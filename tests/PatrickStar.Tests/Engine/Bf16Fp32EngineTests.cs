using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>bf16 storage with fp32 compute (<see cref="Precision.Bf16Fp32"/>) in both engines.</summary>
public class Bf16Fp32EngineTests
{
    private readonly ITestOutputHelper output;

    public Bf16Fp32EngineTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private static TrainingConfig Config(string engine, int steps)
    {
        var c = TrainingHarness.Config(steps, Precision.Bf16Fp32);
        c.Engine = engine;
        if (engine == "chunked")
            c.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = 1L << 30, HostMemory = 1L << 30 };
        return c;
    }

    [Fact]
    public void BothEnginesLearnAndAgree()
    {
        var plain = TrainingHarness.Losses(Config("plain", 8));
        var chunked = TrainingHarness.Losses(Config("chunked", 8));
        output.WriteLine($"plain   {string.Join(" ", plain.Select(l => l.ToString("F4")))}");
        output.WriteLine($"chunked {string.Join(" ", chunked.Select(l => l.ToString("F4")))}");
        Assert.Equal(8, plain.Count);
        Assert.True(plain[^1] < plain[0] - 0.1, $"plain loss did not fall: {plain[0]:F4} -> {plain[^1]:F4}");
        Assert.True(chunked[^1] < chunked[0] - 0.1, $"chunked loss did not fall: {chunked[0]:F4} -> {chunked[^1]:F4}");
        for (int i = 0; i < plain.Count; i++)
            Assert.True(Math.Abs(plain[i] - chunked[i]) < 0.02, $"step {i + 1}: plain {plain[i]:F4} vs chunked {chunked[i]:F4}");
    }

    [Fact]
    public void ForwardComputesInFp32OverBf16Weights()
    {
        var cfg = GptRun.ResolveModel(TrainingHarness.Config(1));
        manual_seed(11);
        using var mixed = new GptModel(cfg);
        using var reference = new GptModel(cfg);
        mixed.to(ScalarType.BFloat16);
        mixed.ActivationType = ScalarType.Float32;
        // The reference holds exactly the bf16 values, widened (exact) to fp32.
        using (no_grad())
            foreach (var (m, r) in mixed.parameters().Zip(reference.parameters()))
                r.copy_(m.to(ScalarType.Float32));
        mixed.eval();
        reference.eval();

        using var scope = NewDisposeScope();
        var ids = randint(TrainingHarness.Vocab, new long[] { 2, 16 }, dtype: ScalarType.Int64);
        var a = mixed.call(ids);
        var b = reference.call(ids);
        Assert.Equal(ScalarType.Float32, a.dtype);
        float worst = (a - b).abs().max().item<float>();
        output.WriteLine($"max |mixed - fp32| = {worst}");
        Assert.True(worst < 1e-5f, $"logits differ by {worst}: the mixed model does not compute in fp32");

        // Gradients come back in the parameters' storage dtype (bf16), and match fp32's rounded to bf16.
        mixed.train();
        reference.train();
        LanguageModelLoss.CrossEntropy(mixed.call(ids), ids).backward();
        LanguageModelLoss.CrossEntropy(reference.call(ids), ids).backward();
        foreach (var (m, r) in mixed.parameters().Zip(reference.parameters()))
        {
            var gm = m.grad!;
            var gr = r.grad!;
            Assert.Equal(ScalarType.BFloat16, gm.dtype);
            float scale = Math.Max(1e-6f, gr.abs().max().item<float>());
            float diff = (gm.to(ScalarType.Float32) - gr).abs().max().item<float>();
            Assert.True(diff <= scale * 1e-2f, $"gradient differs by {diff} (largest {scale})");
        }
    }

    [Fact]
    public void ChunkEngineStoresBf16ParametersAt14BytesPerElement()
    {
        var config = Config("chunked", 1);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var engine = Assert.IsType<ChunkedEngine>(run.Engine);
        Assert.All(engine.Model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        var host = engine.ChunkBytesIn(Tier.Host);
        var device = engine.ChunkBytesIn(Tier.Device);
        long elements = engine.Layout.ChunkCount * engine.Layout.ChunkSize;
        Assert.Equal(elements * 2, host.Param + device.Param);
        Assert.Equal(elements * 4, host.Master + device.Master);
        Assert.Equal(elements * 4, host.Momentum + device.Momentum);
        Assert.Equal(elements * 4, host.Variance + device.Variance);
        Assert.Equal(elements * 14, host.Param + host.Master + host.Momentum + host.Variance
                                    + device.Param + device.Master + device.Momentum + device.Variance);
        Assert.Equal(14, ChunkEngineOptions.HostBytesPerParameter(config));
        Assert.Equal(PlainEngine.BytesPerParameter(Precision.Bf16), PlainEngine.BytesPerParameter(Precision.Bf16Fp32));
    }

    [Fact]
    public void EstimatorCountsBf16ParametersAndFp32Activations()
    {
        var cfg = GptRun.ResolveModel(TrainingHarness.Config(1));
        var mixed = MemoryEstimator.Activations(cfg, Precision.Bf16Fp32, 4, 32, checkpointing: false, chunked: true);
        var fp32 = MemoryEstimator.Activations(cfg, Precision.Fp32, 4, 32, checkpointing: false, chunked: true);
        Assert.Equal(fp32.Peak, mixed.Peak);
    }
}
