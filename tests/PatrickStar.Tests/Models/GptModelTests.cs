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
        using var expected = hidden.matmul(model.Transformer.TokenEmbedding.Weight.t());
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

/// <summary>The parameterised autograd functions give the same gradients as libtorch's own operators.</summary>
public class ParameterOpsTests
{
    public ParameterOpsTests() => TorchRuntime.EnsureLoaded();

    private static (Tensor Ours, Tensor Reference, Tensor[] OurGrads, Tensor[] RefGrads) Compare(
        Func<Tensor[], Tensor> ours, Func<Tensor[], Tensor> reference, params Tensor[] inputs)
    {
        var a = inputs.Select(t => t.is_floating_point() ? new TorchSharp.Modules.Parameter(t.clone()) : t.clone()).ToArray();
        var b = inputs.Select(t => t.is_floating_point() ? t.clone().requires_grad_() : t.clone()).ToArray();
        var ya = ours(a);
        var yb = reference(b);
        using var seed = randn_like(ya);
        ya.backward(new[] { seed });
        yb.backward(new[] { seed });
        return (ya, yb,
            a.Where(t => t.is_floating_point()).Select(t => t.grad!).ToArray(),
            b.Where(t => t.is_floating_point()).Select(t => t.grad!).ToArray());
    }

    private static void AssertClose(Tensor a, Tensor b, double tol = 1e-5) =>
        Assert.True(a.allclose(b, rtol: tol, atol: tol), $"max difference {(a - b).abs().max().item<float>()}");

    [Fact]
    public void AddmmMatchesTorch()
    {
        manual_seed(1);
        var (y, r, g, gr) = Compare(
            t => PatrickStar.Hooks.ParameterOps.Addmm(t[0], (TorchSharp.Modules.Parameter)t[1], (TorchSharp.Modules.Parameter)t[2], "test"),
            t => addmm(t[2], t[0], t[1], 1, 1),
            randn(6, 5), randn(5, 7), randn(7));
        AssertClose(y, r);
        for (int i = 0; i < g.Length; i++) AssertClose(g[i], gr[i]);
    }

    [Fact]
    public void LayerNormMatchesTorch()
    {
        manual_seed(2);
        var (y, r, g, gr) = Compare(
            t => PatrickStar.Hooks.ParameterOps.LayerNorm(t[0], (TorchSharp.Modules.Parameter)t[1], (TorchSharp.Modules.Parameter)t[2], 1e-5, "test"),
            t => nn.functional.layer_norm(t[0], new long[] { 8 }, t[1], t[2], 1e-5),
            randn(3, 4, 8), randn(8), randn(8));
        AssertClose(y, r);
        for (int i = 0; i < g.Length; i++) AssertClose(g[i], gr[i], 1e-4);
    }

    /// <summary>Backward runs libtorch's own LayerNorm kernel: the same bits as autograd through layer_norm, in fp32 and bf16.</summary>
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void LayerNormGradientsAreTorchsOwn(ScalarType dtype)
    {
        manual_seed(4);
        var (y, r, g, gr) = Compare(
            t => PatrickStar.Hooks.ParameterOps.LayerNorm(t[0], (TorchSharp.Modules.Parameter)t[1], (TorchSharp.Modules.Parameter)t[2], 1e-5, "test"),
            t => nn.functional.layer_norm(t[0], new long[] { 64 }, t[1], t[2], 1e-5),
            randn(4, 16, 64).to(dtype), (randn(64) + 1).to(dtype), randn(64).to(dtype));
        static float MaxDifference(Tensor a, Tensor b) => (a.to(ScalarType.Float32) - b.to(ScalarType.Float32)).abs().max().item<float>();
        Assert.Equal(0f, MaxDifference(y, r));
        for (int i = 0; i < g.Length; i++)
        {
            Assert.Equal(dtype, g[i].dtype);
            Assert.True(MaxDifference(g[i], gr[i]) == 0, $"gradient {i}: max difference {MaxDifference(g[i], gr[i])}");
        }
    }

    [Fact]
    public void EmbeddingAndTiedHeadMatchTorch()
    {
        manual_seed(3);
        var ids = tensor(new long[] { 1, 3, 3, 0, 9, 3 }).reshape(2, 3);
        var (y, r, g, gr) = Compare(
            t => PatrickStar.Hooks.ParameterOps.Embedding(t[0], (TorchSharp.Modules.Parameter)t[1], "test"),
            t => t[1][t[0]],
            ids, randn(10, 4));
        AssertClose(y, r);
        AssertClose(g[0], gr[0]);

        var (h, hr, hg, hgr) = Compare(
            t => PatrickStar.Hooks.ParameterOps.LinearNoBias(t[0], (TorchSharp.Modules.Parameter)t[1], "test"),
            t => nn.functional.linear(t[0], t[1]),
            randn(2, 3, 4), randn(10, 4));
        AssertClose(h, hr);
        for (int i = 0; i < hg.Length; i++) AssertClose(hg[i], hgr[i]);
    }

    private sealed class ThrowingHandler : PatrickStar.Hooks.IParameterHandler
    {
        public void BeforeBackward(string module, IReadOnlyList<TorchSharp.Modules.Parameter> parameters) => throw new InvalidOperationException($"boom in {module}");
        public bool AcceptGradient(TorchSharp.Modules.Parameter parameter, Tensor gradient) => false;
        public void AfterBackward(string module, IReadOnlyList<TorchSharp.Modules.Parameter> parameters) { }
    }

    [Fact]
    public void AnExceptionInsideBackwardIsRethrownAfterwardsInsteadOfAborting()
    {
        var w = new TorchSharp.Modules.Parameter(randn(4, 3));
        var b = new TorchSharp.Modules.Parameter(randn(3));
        PatrickStar.Hooks.ParameterEvents.Attach(w, new ThrowingHandler());
        try
        {
            var y = PatrickStar.Hooks.ParameterOps.Addmm(randn(2, 4, requires_grad: true), w, b, "layer.x");
            y.sum().backward(); // must return normally: the error is captured, not thrown into libtorch
            var e = Assert.Throws<InvalidOperationException>(PatrickStar.Hooks.ParameterEvents.RethrowCaptured);
            Assert.Contains("boom in layer.x", e.Message);
            PatrickStar.Hooks.ParameterEvents.RethrowCaptured(); // once only
        }
        finally
        {
            PatrickStar.Hooks.ParameterEvents.Detach(w);
        }
    }
}
