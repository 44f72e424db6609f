using PatrickStar.Models.Generation;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

public class KvCacheGenerationTests
{
    public KvCacheGenerationTests() => TorchRuntime.EnsureLoaded();

    private const int Vocab = 96;

    public static TheoryData<string> Families => new() { "gpt", "llama" };

    private static ICausalLm NewModel(string family)
    {
        manual_seed(4);
        ICausalLm model = family == "gpt"
            ? new GptModel(new GptConfig(Vocab, ContextLength: 24, Layers: 2, Hidden: 32, Heads: 4))
            : new LlamaForCausalLM(new LlamaConfig(Vocab, ContextLength: 24, Layers: 2, Hidden: 32, Heads: 4, KvHeads: 2, Intermediate: 48));
        model.Network.eval();
        // Weights far larger than the N(0, 0.02) start: an untrained model's greedy chain would otherwise repeat one
        // token, and a chain that ignores positions would not show a cache that puts tokens at the wrong ones.
        using (no_grad())
            foreach (var p in model.Network.parameters().Where(p => p.dim() == 2)) p.normal_(0, 0.3);
        return model;
    }

    private static int[] Prompt(int n) => Enumerable.Range(0, n).Select(i => (i * 11 + 5) % Vocab).ToArray();

    [Theory]
    [MemberData(nameof(Families))]
    public void GreedyTokensAreTheSameWithAndWithoutTheCache(string family)
    {
        var model = NewModel(family);
        using var _ = (IDisposable)model;
        // 6 + 30 tokens cross the 24-token context: the cache serves the first 18 steps, the sliding window the rest.
        var greedy = new SamplingOptions(Temperature: 0, StopAtEndOfText: false);
        var cached = new TextGenerator(model).GenerateTokens(Prompt(6), 30, greedy).ToArray();
        var uncached = new TextGenerator(model, useCache: false).GenerateTokens(Prompt(6), 30, greedy).ToArray();
        Assert.Equal(30, cached.Length);
        Assert.Equal(uncached, cached);
        Assert.True(cached.Distinct().Count() > 5, $"a near-constant chain tests little: {string.Join(" ", cached)}");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void SampledTokensAreTheSameWithAndWithoutTheCache(string family)
    {
        var model = NewModel(family);
        using var _ = (IDisposable)model;
        var options = new SamplingOptions(Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 3, StopAtEndOfText: false);
        var cached = new TextGenerator(model).GenerateTokens(Prompt(4), 16, options).ToArray();
        var uncached = new TextGenerator(model, useCache: false).GenerateTokens(Prompt(4), 16, options).ToArray();
        Assert.Equal(uncached, cached);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void CachedLogitsEqualTheFullForwardAtEveryPosition(string family)
    {
        var model = NewModel(family);
        using var _ = (IDisposable)model;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(Prompt(20).Select(i => (long)i).ToArray(), new long[] { 1, 20 });
        var full = model.Network.call(ids);
        using var cache = model.NewCache();
        var parts = new List<Tensor> { model.Forward(ids.narrow(1, 0, 7), cache), model.Forward(ids.narrow(1, 7, 5), cache) };
        for (int p = 12; p < 20; p++) parts.Add(model.Forward(ids.narrow(1, p, 1), cache));
        using var diff = (cat(parts, dim: 1) - full).abs().max();
        Assert.True(diff.item<float>() < 1e-5, $"{family}: cached logits differ by {diff.item<float>()}");
    }
}
