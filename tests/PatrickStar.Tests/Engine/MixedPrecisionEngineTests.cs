using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Engine;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Tests.Engine;

/// <summary>fp16 loss scaling in both engines, and hybrid Adam (optimizer state on the device) in the chunk engine.</summary>
public class MixedPrecisionEngineTests
{
    private readonly ITestOutputHelper output;

    public MixedPrecisionEngineTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private static TrainingConfig WithEngine(TrainingConfig c, string engine, bool hybrid = true, double marginRatio = 0.8, bool tensorOps = false)
    {
        c.Engine = engine;
        c.Chunks = new ChunkSection
        {
            ChunkSize = 4096, DeviceMemory = 1L << 30, HostMemory = 1L << 30, HybridAdam = hybrid, MarginUseRatio = marginRatio,
            TensorAdamOnDevice = tensorOps,
        };
        return c;
    }

    private static List<Tensor> Snapshot(Module<Tensor, Tensor> model) =>
        model.parameters().Select(p => p.detach().to(ScalarType.Float32).clone()).ToList();

    private static float MaxDifference(List<Tensor> a, List<Tensor> b)
    {
        float worst = 0;
        for (int i = 0; i < a.Count; i++)
        {
            using var d = (a[i] - b[i]).abs().max();
            worst = Math.Max(worst, d.item<float>());
        }
        return worst;
    }

    /// <summary>One training step through the engine; <paramref name="poison"/> multiplies the loss by infinity (every gradient overflows).</summary>
    private static StepOutcome TrainStep(ITrainingEngine engine, TokenDataset data, SplitMix64 rng, bool poison)
    {
        using var scope = NewDisposeScope();
        var (x, y) = data.Batch(Split.Train, 4, 32, rng, engine.Device);
        var loss = LanguageModelLoss.CrossEntropy(engine.Model.call(x), y);
        engine.Backward(poison ? loss * float.PositiveInfinity : loss);
        return engine.Step(1e-2);
    }

    [Theory]
    [InlineData("plain")]
    [InlineData("chunked")]
    public void Fp16OverflowSkipsTheStepRestoresTheWeightsAndBacksTheScaleOff(string engineName)
    {
        var config = WithEngine(TrainingHarness.Config(steps: 1, Precision.Fp16), engineName);
        config.Fp16 = new Fp16Section { InitialScalePower = 10, LossScaleWindow = 3, Hysteresis = 2, MinLossScale = 1 };
        var data = TrainingHarness.CyclicData();
        using var run = GptRun.Create(config, data);
        var engine = run.Engine;
        var scaler = engine switch { ChunkedEngine c => c.Scaler, PlainEngine p => p.Scaler, _ => throw new InvalidOperationException() };
        var rng = new SplitMix64(3);

        Assert.False(TrainStep(engine, data, rng, poison: false).Skipped);
        var before = Snapshot(engine.Model);
        Assert.Equal(1024, scaler.Scale);

        // First overflow: skipped, weights untouched, the scale kept (hysteresis 2).
        Assert.True(TrainStep(engine, data, rng, poison: true).Skipped);
        Assert.Equal(0, MaxDifference(before, Snapshot(engine.Model)));
        Assert.Equal(1024, scaler.Scale);
        // Second overflow: skipped again, now the scale halves.
        Assert.True(TrainStep(engine, data, rng, poison: true).Skipped);
        Assert.Equal(0, MaxDifference(before, Snapshot(engine.Model)));
        Assert.Equal(512, scaler.Scale);

        // Three clean steps: the weights move, the scale doubles.
        for (int i = 0; i < 3; i++) Assert.False(TrainStep(engine, data, rng, poison: false).Skipped);
        Assert.True(MaxDifference(before, Snapshot(engine.Model)) > 0);
        Assert.Equal(1024, scaler.Scale);
        Assert.Equal(1024, engine.Statistics.LossScale);
    }

    [Fact]
    public void Fp16TrainsAndBothEnginesAgree()
    {
        var plain = TrainingHarness.Losses(WithEngine(TrainingHarness.Config(steps: 8, Precision.Fp16), "plain"));
        var chunked = TrainingHarness.Losses(WithEngine(TrainingHarness.Config(steps: 8, Precision.Fp16), "chunked"));
        output.WriteLine("plain   " + string.Join(", ", plain.Select(l => l.ToString("0.0000"))));
        output.WriteLine("chunked " + string.Join(", ", chunked.Select(l => l.ToString("0.0000"))));
        Assert.True(plain[^1] < plain[0] - 0.3, $"fp16 plain loss {plain[0]} -> {plain[^1]}");
        for (int i = 0; i < plain.Count; i++)
            Assert.True(Math.Abs(plain[i] - chunked[i]) <= 0.01, $"step {i + 1}: plain {plain[i]} vs chunked {chunked[i]}");
    }

    private sealed record HybridRun(List<double> Losses, List<Tensor> Parameters, double OnDevice, double Chunks, long GradientBytesToHost);

    private static HybridRun RunChunked(TrainingConfig config)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var losses = new List<double>();
        EngineStatistics? last = null;
        run.Trainer.StepCompleted += m => { losses.Add(m.Loss); last = m.EngineStatistics; };
        run.Trainer.Run();
        var i = last!.Chunks!.LastIteration!;
        return new HybridRun(losses, Snapshot(run.Model), i.OptimizerChunksOnDevice, last.Chunks.Chunks, i.OptimizerGradientBytesToHost);
    }

    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Bf16)]
    public void HybridAdamGivesTheSameParametersAsAllHost(Precision precision)
    {
        var host = RunChunked(WithEngine(TrainingHarness.Config(steps: 5, precision), "chunked", hybrid: false));
        // A margin ratio that leaves room for about half of the optimizer-state groups (12 B per element each).
        double groups = Math.Ceiling(host.Chunks / 2) + 0.5;
        double ratio = groups * 4096 * 12 / (1L << 30);
        // On the CPU device the kernel updates device-resident state too: the same bits, wherever the state lives.
        var all = RunChunked(WithEngine(TrainingHarness.Config(steps: 5, precision), "chunked", hybrid: true));
        var part = RunChunked(WithEngine(TrainingHarness.Config(steps: 5, precision), "chunked", hybrid: true, marginRatio: ratio));
        // The GPU path (tensor ops on the device tier), forced here: equal within float rounding.
        var tensorAll = RunChunked(WithEngine(TrainingHarness.Config(steps: 5, precision), "chunked", hybrid: true, tensorOps: true));
        var tensorPart = RunChunked(WithEngine(TrainingHarness.Config(steps: 5, precision), "chunked", hybrid: true, marginRatio: ratio, tensorOps: true));
        output.WriteLine($"{host.Chunks} chunks; on device: host-only {host.OnDevice}, all {all.OnDevice}, part {part.OnDevice}");

        Assert.Equal(0, host.OnDevice);
        Assert.Equal(host.Chunks, all.OnDevice);
        Assert.InRange(part.OnDevice, 1, host.Chunks - 1);
        Assert.Equal(host.Chunks, tensorAll.OnDevice);
        Assert.Equal(part.OnDevice, tensorPart.OnDevice);
        Assert.Equal(0, MaxDifference(host.Parameters, all.Parameters));
        Assert.Equal(0, MaxDifference(host.Parameters, part.Parameters));
        Assert.Equal(host.Losses, part.Losses);
        // bf16 parameters are rounded from the masters: an ulp of difference in a master can flip one bf16 ulp (2^-8 relative).
        float tolerance = precision == Precision.Fp32 ? 1e-5f : 2e-2f;
        foreach (var tensor in new[] { tensorAll, tensorPart })
        {
            Assert.True(MaxDifference(host.Parameters, tensor.Parameters) <= tolerance, $"tensor path: {MaxDifference(host.Parameters, tensor.Parameters)}");
            for (int i = 0; i < host.Losses.Count; i++)
                Assert.True(Math.Abs(host.Losses[i] - tensor.Losses[i]) <= 1e-3 * host.Losses[i], $"step {i + 1}");
            Assert.Equal(0, tensor.GradientBytesToHost); // device-resident state reads its gradients where they are
        }
    }

    [Fact]
    public void OptimizerStateIsReadableAndWritablePerChunkAndPerParameter()
    {
        var config = WithEngine(TrainingHarness.Config(steps: 2), "chunked", hybrid: false);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;
        Assert.Equal(2, engine.OptimizerStepCount);

        string name = engine.ParameterNames[0];
        using var m = engine.ReadState(name, StateKind.Momentum);
        Assert.True(m.abs().max().item<float>() > 0, "momentum is non-zero after two steps");

        // Write a chunk of masters: the model's parameters show the new values.
        using var masters = engine.ReadChunk(ChunkKind.Master, 0);
        using var doubled = masters * 2;
        engine.WriteChunk(ChunkKind.Master, 0, doubled);
        using var readBack = engine.ReadChunk(ChunkKind.Master, 0);
        Assert.True(readBack.eq(doubled).all().item<bool>());
        var p = run.Model.named_parameters().First(n => n.name == name).parameter;
        using var expected = engine.ReadState(name, StateKind.Master);
        Assert.True(p.detach().eq(expected).all().item<bool>());

        using var wrong = zeros(3);
        var e = Assert.Throws<ArgumentException>(() => engine.WriteState(name, StateKind.Variance, wrong));
        Assert.Contains(name, e.Message);
    }
}
