using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

public class LlamaModelTests
{
    public LlamaModelTests() => TorchRuntime.EnsureLoaded();

    // Grouped-query: 4 query heads share 2 key/value heads.
    private static readonly LlamaConfig Small = new(VocabSize: 50, ContextLength: 16, Layers: 2, Hidden: 32, Heads: 4, KvHeads: 2, Intermediate: 40);

    private static LlamaForCausalLM NewModel(LlamaConfig c, long seed = 3)
    {
        manual_seed(seed);
        return new LlamaForCausalLM(c);
    }

    private static Tensor Ids(long b, long t, int vocab, long seed = 9)
    {
        var g = new PatrickStar.Data.SplitMix64(seed);
        return tensor(Enumerable.Range(0, (int)(b * t)).Select(_ => (long)g.NextBelow((ulong)vocab)).ToArray(), new[] { b, t });
    }

    private static float MaxDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }

    [Fact]
    public void ParameterNamesAreLlamaForCausalLMs()
    {
        using var model = NewModel(Small);
        var names = model.named_parameters().Select(n => n.name).ToList();
        Assert.Equal(new[]
        {
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
        }, names.Take(10));
        Assert.Equal(new[] { "model.norm.weight", "lm_head.weight" }, names.TakeLast(2));
        Assert.Equal(new long[] { 16, 32 }, model.named_parameters().Single(n => n.name.EndsWith("0.self_attn.k_proj.weight")).parameter.shape);
        Assert.Equal(Small.ParameterCount, model.parameters().Sum(p => p.numel()));
        using var tied = NewModel(Small with { TieEmbeddings = true });
        Assert.DoesNotContain(tied.named_parameters(), n => n.name == "lm_head.weight");
        Assert.Equal((Small with { TieEmbeddings = true }).ParameterCount, tied.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void PresetParameterCountsAreThePublishedOnes()
    {
        Assert.Equal(1_100_048_384, LlamaZoo.Find("tinyllama-1.1b")!.Config.ParameterCount);
        Assert.Equal(6_738_415_616, LlamaZoo.Find("llama-2-7b")!.Config.ParameterCount);
        Assert.Equal(13_015_864_320, LlamaZoo.Find("llama-2-13b")!.Config.ParameterCount);
        Assert.Equal(8_030_261_248, LlamaZoo.Find("llama-3-8b")!.Config.ParameterCount);
        Assert.Equal(68_976_648_192, LlamaZoo.Find("llama-2-70b")!.Config.ParameterCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ForwardMatchesTheReference(bool tied)
    {
        var c = Small with { TieEmbeddings = tied };
        using var model = NewModel(c);
        using var scope = NewDisposeScope();
        var ids = Ids(2, 12, c.VocabSize);
        var ours = model.call(ids);
        var reference = LlamaReference.Logits(LlamaReference.Weights(model), c, ids);
        Assert.Equal(new long[] { 2, 12, c.VocabSize }, ours.shape);
        Assert.True(MaxDiff(ours, reference) < 1e-5, $"logits differ by {MaxDiff(ours, reference)}");
    }

    [Fact]
    public void Llama3ScalingMatchesHandComputedFrequencies()
    {
        // d = 8, θ = 10⁴: wavelengths 2π·{1, 10, 100, 1000}. Original 64 positions, low 1, high 4: 6.3 < 16 is kept,
        // 62.8 in [16, 64] is blended with smooth = (64/62.83 - 1)/3, 628 and 6283 > 64 are divided by the factor 8.
        var inv = Rope.InverseFrequencies(8, 10000, new RopeScaling(8, 1, 4, 64));
        var expected = new[] { 1.0, 0.013042256043820465, 0.00125, 0.000125 };
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], inv[i], 1e-12);
        // Llama-3.1-8B (d = 128, θ = 5·10⁵, factor 8 over 8192 positions): pair 10 kept, 31 blended, 35 divided.
        var llama31 = LlamaZoo.Find("llama-3.1-8b")!.Config;
        var big = Rope.InverseFrequencies(llama31.HeadSize, llama31.RopeTheta, llama31.Scaling);
        Assert.Equal(0.12868737343265052, big[10], 1e-15);
        Assert.Equal(0.0008567514129196321, big[31], 1e-15);
        Assert.Equal(9.556212353964683e-05, big[35], 1e-16);
        // And the model uses them: its forward equals the reference run with these frequencies.
        var c = Small with { Hidden = 32, Heads = 4, RopeTheta = 10000, Scaling = new RopeScaling(8, 1, 4, 64) };
        using var model = NewModel(c);
        using var scope = NewDisposeScope();
        var ids = Ids(1, 16, c.VocabSize);
        var reference = LlamaReference.Logits(LlamaReference.Weights(model), c, ids, Rope.InverseFrequencies(c.HeadSize, c.RopeTheta, c.Scaling));
        Assert.True(MaxDiff(model.call(ids), reference) < 1e-5);
    }

    [Fact]
    public void CachedForwardAtLaterPositionsMatchesTheFullForward()
    {
        using var model = NewModel(Small);
        model.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = Ids(2, 14, Small.VocabSize);
        var full = model.call(ids);
        using var cache = model.NewCache();
        var first = model.Forward(ids.narrow(1, 0, 9), cache);      // positions 0..8
        var middle = model.Forward(ids.narrow(1, 9, 3), cache);     // 9..11: a block of queries over the cache
        var last = model.Forward(ids.narrow(1, 12, 1), cache);      // 12: one token
        var rest = model.Forward(ids.narrow(1, 13, 1), cache);      // 13
        var joined = cat(new[] { first, middle, last, rest }, dim: 1);
        Assert.Equal(14, cache.Length);
        Assert.True(MaxDiff(joined, full) < 1e-5, $"cached logits differ by {MaxDiff(joined, full)}");
        Assert.Throws<ArgumentException>(() => model.Forward(ids.narrow(1, 0, 3), cache)); // 17 > 16 positions
    }

    [Fact]
    public void OneAdamWStepMatchesTheReference()
    {
        const double lr = 1e-2, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, decay = 0.1;
        using var model = NewModel(Small);
        var w = LlamaReference.Weights(model, requiresGrad: true);
        var config = new TrainingConfig
        {
            Engine = "plain", Precision = Precision.Fp32, GradientClipping = 1e9,
            Optimizer = new OptimizerSection { LearningRate = lr, Beta1 = beta1, Beta2 = beta2, Eps = eps, WeightDecay = decay },
        };
        using var engine = EngineFactory.Create(model, config, CPU);
        var ids = Ids(2, 13, Small.VocabSize);
        var (x, y) = (ids.narrow(1, 0, 12), ids.narrow(1, 1, 12));

        var loss = LanguageModelLoss.CrossEntropy(engine.Model.call(x), y);
        var referenceLoss = LlamaReference.CrossEntropy(LlamaReference.Logits(w, Small, x), y);
        Assert.Equal(referenceLoss.item<float>(), loss.item<float>(), 1e-5);
        engine.Backward(loss);
        engine.Step(lr);
        referenceLoss.backward();
        var expected = LlamaReference.AdamWStep(w, lr, beta1, beta2, eps, decay);
        foreach (var (name, p) in model.named_parameters())
            Assert.True(MaxDiff(p, expected[name]) < 1e-5, $"{name} differs by {MaxDiff(p, expected[name])} after the step");
        // The step moved every weight (by about lr), so equality is not the starting point's.
        Assert.True(MaxDiff(model.named_parameters().First().parameter, w["model.embed_tokens.weight"]) > lr / 2);
    }
}
