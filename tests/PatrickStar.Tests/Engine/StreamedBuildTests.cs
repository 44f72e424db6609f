using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>A model built with placeholder parameters and initialised in its chunk slots equals the normally built one.</summary>
public class StreamedBuildTests
{
    public StreamedBuildTests() => TorchRuntime.EnsureLoaded();

    /// <summary>
    /// The same seed gives bit-identical parameters and fp32 masters, whether the model is built whole and packed or built
    /// as placeholders and initialised chunk by chunk. LLaMA's parameters are initialised in another order than they are
    /// used (norms last), so its chunks fill out of order; a small chunk size makes several of them.
    /// </summary>
    [Theory]
    [InlineData("gpt2-tiny", Precision.Fp32)]
    [InlineData("gpt2-tiny", Precision.Bf16)]
    [InlineData("llama-tiny", Precision.Fp32)]
    [InlineData("llama-tiny", Precision.Bf16)]
    public void StreamedBuildEqualsPackingTheBuiltModel(string preset, Precision precision)
    {
        var config = TrainingHarness.Config(steps: 1, precision);
        config.Engine = "chunked";
        config.Model = new ModelSection { Preset = preset, VocabSize = TrainingHarness.Vocab };
        var choice = ModelFamilies.Resolve(config.Model);
        var options = new ChunkEngineOptions(DeviceMemory: 1L << 30, HostMemory: 1L << 30, ChunkSize: 20_000);
        var compute = PlainEngine.ComputeType(precision);
        var activation = PlainEngine.ActivationType(precision);
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);

        manual_seed(5);
        using var whole = choice.Build(false, activation);
        using var packed = new ChunkedEngine(whole, config, CPU, options, sample);
        using var afterWhole = randn(8);

        manual_seed(5);
        TorchSharp.torch.nn.Module<Tensor, Tensor> skeleton;
        using (ParameterPlaceholders.Scope(compute))
            skeleton = choice.Build(false, activation);
        Assert.All(skeleton.parameters(), p => Assert.True(ParameterPlaceholders.IsPlaceholder(p)));
        using var _ = skeleton;
        using var streamed = new ChunkedEngine(skeleton, config, CPU, options, sample, initializer: (IParameterInitializer)skeleton);
        using var afterStreamed = randn(8);

        Assert.True(packed.ChunkCount > 2, $"{packed.ChunkCount} chunks");
        Assert.Equal(packed.Layout.UsedPerChunk, streamed.Layout.UsedPerChunk);
        var expected = whole.named_parameters().ToList();
        var actual = skeleton.named_parameters().ToList();
        Assert.Equal(expected.Select(p => p.name), actual.Select(p => p.name));
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].parameter.Same(actual[i].parameter), $"{preset} {precision}: parameter {expected[i].name} differs");
            using var m1 = packed.ReadState(expected[i].name, StateKind.Master);
            using var m2 = streamed.ReadState(expected[i].name, StateKind.Master);
            Assert.True(m1.Same(m2), $"{preset} {precision}: master of {expected[i].name} differs");
        }
        Assert.True(afterWhole.Same(afterStreamed), "the random stream after the build differs");
    }
}
