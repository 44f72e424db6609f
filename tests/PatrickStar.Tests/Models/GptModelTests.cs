using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

public class GptModelTests
{
    public GptModelTests() => TorchRuntime.EnsureLoaded();

    private static readonly GptConfig Small = new(VocabSize: 97, ContextLength: 16, Layers: 2, Hidden: 32, Heads: 4);

    [Fact]
    public void Gpt2SmallHasHuggingFaceNamesShapesAndCount()
    {
        var config = ModelZoo.Get("gpt2").Config;
        using var model = new GptModel(config);
        var named = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);

        Assert.Equal(124_439_808L, named.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
        Assert.Equal(124_439_808L, config.ParameterCount);
        Assert.Equal(2 + 12 * 12 + 2, named.Count);

        Assert.Equal(new long[] { 50257, 768 }, named["transformer.wte.weight"]);
        Assert.Equal(new long[] { 1024, 768 }, named["transformer.wpe.weight"]);
        for (int i = 0; i < 12; i++)
        {
            string p = $"transformer.h.{i}.";
            Assert.Equal(new long[] { 768 }, named[p + "ln_1.weight"]);
            Assert.Equal(new long[] { 768 }, named[p + "ln_1.bias"]);
            Assert.Equal(new long[] { 768, 2304 }, named[p + "attn.c_attn.weight"]); // Conv1D: [in, out]
            Assert.Equal(new long[] { 2304 }, named[p + "attn.c_attn.bias"]);
            Assert.Equal(new long[] { 768, 768 }, named[p + "attn.c_proj.weight"]);
            Assert.Equal(new long[] { 768 }, named[p + "attn.c_proj.bias"]);
            Assert.Equal(new long[] { 768 }, named[p + "ln_2.weight"]);
            Assert.Equal(new long[] { 768 }, named[p + "ln_2.bias"]);
            Assert.Equal(new long[] { 768, 3072 }, named[p + "mlp.c_fc.weight"]);
            Assert.Equal(new long[] { 3072 }, named[p + "mlp.c_fc.bias"]);
            Assert.Equal(new long[] { 3072, 768 }, named[p + "mlp.c_proj.weight"]);
            Assert.Equal(new long[] { 768 }, named[p + "mlp.c_proj.bias"]);
        }
        Assert.Equal(new long[] { 768 }, named["transformer.ln_f.weight"]);
        Assert.Equal(new long[] { 768 }, named["transformer.ln_f.bias"]);
    }

    [Theory]
    [InlineData("gpt2-tiny")]
    [InlineData("gpt2-mini")]
    public void PresetParameterCountMatchesTheBuiltModel(string preset)
    {
        var config = ModelZoo.Get(preset).Config;
        using var model = new GptModel(config);
        Assert.Equal(config.ParameterCount, model.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void LogitsHaveShapeBatchTimeVocab()
    {
        manual_seed(1);
        using var model = new GptModel(Small);
        using var idx = randint(0, Small.VocabSize, new long[] { 3, 11 });
        using var logits = model.call(idx);
        Assert.Equal(new long[] { 3, 11, Small.VocabSize }, logits.shape);
    }

    [Fact]
    public void ChangingAFutureTokenDoesNotChangeEarlierLogits()
    {
        manual_seed(2);
        using var model = new GptModel(Small);
        model.eval();
        using var _ = no_grad();
        using var a = randint(0, Small.VocabSize, new long[] { 2, 12 });
        using var b = a.clone();
        const int changed = 7;
        b[TensorIndex.Colon, changed] = (a[TensorIndex.Colon, changed] + 1) % Small.VocabSize;

        using var la = model.call(a);
        using var lb = model.call(b);
        using var before = la[TensorIndex.Colon, TensorIndex.Slice(0, changed)];
        using var beforeB = lb[TensorIndex.Colon, TensorIndex.Slice(0, changed)];
        Assert.True(before.Same(beforeB), "logits before the changed position must be identical");
        using var after = la[TensorIndex.Colon, TensorIndex.Slice(changed)];
        using var afterB = lb[TensorIndex.Colon, TensorIndex.Slice(changed)];
        Assert.False(after.allclose(afterB), "logits from the changed position on must differ");
    }

    [Fact]
    public void EverySubmoduleRunsThroughCallSoHooksFire()
    {
        using var model = new GptModel(Small);
        var fired = new HashSet<string>();
        var modules = model.named_modules().Where(m => m.name.Length > 0 && m.module is not TorchSharp.Modules.ModuleList<Block>).ToList();
        foreach (var (name, module) in modules)
        {
            string n = name;
            switch (module)
            {
                case nn.Module<Tensor, Tensor> m:
                    m.register_forward_pre_hook((_, x) => { fired.Add(n); return x; });
                    break;
                default:
                    Assert.Fail($"submodule {name} is not a Module<Tensor, Tensor>");
                    break;
            }
        }
        using var idx = randint(0, Small.VocabSize, new long[] { 1, 5 });
        using var logits = model.call(idx);
        Assert.Equal(modules.Select(m => m.name).Order(), fired.Order());
    }

    [Fact]
    public void LmHeadIsTiedToTheTokenEmbedding()
    {
        manual_seed(3);
        using var model = new GptModel(Small);
        model.eval();
        using var _ = no_grad();
        using var idx = randint(0, Small.VocabSize, new long[] { 1, 4 });
        using var hidden = model.Transformer.call(idx);
        using var expected = hidden.matmul(model.Transformer.TokenEmbedding.weight!.t());
        using var logits = model.call(idx);
        Assert.True(logits.allclose(expected, rtol: 1e-5, atol: 1e-6));
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("lm_head"));
    }

    [Fact]
    public void SequenceLongerThanContextIsRefused()
    {
        using var model = new GptModel(Small);
        using var idx = zeros(new long[] { 1, Small.ContextLength + 1 }, ScalarType.Int64);
        var e = Assert.Throws<ArgumentException>(() => model.call(idx));
        Assert.Contains("n_positions = 16", e.Message);
    }

    [Fact]
    public void InvalidSizesNameTheField()
    {
        var e = Assert.Throws<ArgumentException>(() => new GptConfig(100, 16, 2, 30, 4).Validate());
        Assert.Contains("n_embd = 30 is not divisible by n_head = 4", e.Message);
        var unknown = Assert.Throws<ArgumentException>(() => ModelZoo.Get("gpt5"));
        Assert.Contains("gpt2-tiny", unknown.Message);
    }

    [Fact]
    public void InitialisationIsDeterministicGivenTheSeed()
    {
        manual_seed(42);
        using var a = new GptModel(Small);
        manual_seed(42);
        using var b = new GptModel(Small);
        foreach (var (pa, pb) in a.parameters().Zip(b.parameters()))
            Assert.True(pa.Same(pb));
    }
}
