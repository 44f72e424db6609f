using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

public class TextGeneratorTests
{
    public TextGeneratorTests() => TorchRuntime.EnsureLoaded();

    private static readonly GptConfig Small = new(VocabSize: 128, ContextLength: 32, Layers: 2, Hidden: 64, Heads: 4);

    private static GptModel NewModel()
    {
        manual_seed(21);
        var m = new GptModel(Small);
        m.eval();
        return m;
    }

    private static int[] Prompt(int n) => Enumerable.Range(0, n).Select(i => (i * 7 + 3) % Small.VocabSize).ToArray();

    [Fact]
    public void SamplingIsDeterministicForASeed()
    {
        using var model = NewModel();
        var g = new TextGenerator(model);
        var o = new SamplingOptions(Temperature: 1.0, Seed: 5);
        var a = g.GenerateTokens(Prompt(3), 20, o).ToArray();
        var b = g.GenerateTokens(Prompt(3), 20, o).ToArray();
        var c = g.GenerateTokens(Prompt(3), 20, o with { Seed = 6 }).ToArray();
        Assert.Equal(20, a.Length);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void GreedyIsTheArgmaxChainAndTopK1IsGreedy()
    {
        using var model = NewModel();
        var g = new TextGenerator(model);
        // 28 prompt tokens + 10 new crosses the 32-token context: the window must be cropped.
        var prompt = Prompt(28);
        var greedy = g.GenerateTokens(prompt, 10, new SamplingOptions(Temperature: 0)).ToArray();

        var tokens = prompt.ToList();
        var chain = new List<int>();
        for (int i = 0; i < 10; i++)
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var window = tokens.Skip(Math.Max(0, tokens.Count - Small.ContextLength)).Select(t => (long)t).ToArray();
            var logits = model.call(tensor(window, new long[] { 1, window.Length }));
            int next = (int)logits[0, -1].argmax().item<long>();
            chain.Add(next);
            tokens.Add(next);
        }
        Assert.Equal(chain, greedy);

        var topK1 = g.GenerateTokens(prompt, 10, new SamplingOptions(Temperature: 1.0, TopK: 1, Seed: 99)).ToArray();
        Assert.Equal(greedy, topK1);
    }

    [Fact]
    public void TopPAndTopKFilterAKnownDistribution()
    {
        // Probabilities 0.05, 0.5, 0.1, 0.2, 0.15 at ids 0..4 (shuffled so the sort matters).
        double[] p = { 0.05, 0.5, 0.1, 0.2, 0.15 };
        float[] logits = p.Select(x => (float)Math.Log(x)).ToArray();

        var (ids, probs) = TextGenerator.Distribution(logits, 1.0, 0, 1.0);
        Assert.Equal(new[] { 1, 3, 4, 2, 0 }, ids);
        Assert.Equal(new[] { 0.5, 0.2, 0.15, 0.1, 0.05 }, probs.Select(x => Math.Round(x, 6)));

        // Nucleus 0.75: 0.5 + 0.2 = 0.7 < 0.75, so 0.15 joins; renormalized over 0.85.
        (ids, probs) = TextGenerator.Distribution(logits, 1.0, 0, 0.75);
        Assert.Equal(new[] { 1, 3, 4 }, ids);
        Assert.Equal(new[] { 0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85 }.Select(x => Math.Round(x, 6)), probs.Select(x => Math.Round(x, 6)));

        (ids, _) = TextGenerator.Distribution(logits, 1.0, 0, 0.4);
        Assert.Equal(new[] { 1 }, ids); // the top token alone already reaches p

        (ids, probs) = TextGenerator.Distribution(logits, 1.0, 2, 1.0);
        Assert.Equal(new[] { 1, 3 }, ids);
        Assert.Equal(new[] { 0.5 / 0.7, 0.2 / 0.7 }.Select(x => Math.Round(x, 6)), probs.Select(x => Math.Round(x, 6)));

        // Temperature 2 flattens: p^(1/2), renormalized.
        (_, probs) = TextGenerator.Distribution(logits, 2.0, 0, 1.0);
        double z = p.Sum(Math.Sqrt);
        Assert.Equal(Math.Round(Math.Sqrt(0.5) / z, 6), Math.Round(probs[0], 6));

        // Draws follow the filtered distribution.
        var rng = new SplitMix64(1);
        var o = new SamplingOptions(Temperature: 1.0, TopP: 0.75);
        var counts = new int[5];
        for (int i = 0; i < 20000; i++) counts[TextGenerator.Sample(logits, o, rng)]++;
        Assert.Equal(0, counts[0] + counts[2]);
        Assert.InRange(counts[1] / 20000.0, 0.5 / 0.85 - 0.02, 0.5 / 0.85 + 0.02);
    }

    [Fact]
    public void IncrementalDecodingNeverSplitsCharacters()
    {
        var tok = Gpt2Tokenizer.Instance;
        string text = "héllo 日本語の文章 🙂 done";
        var ids = tok.Encode(text);
        var decoder = new IncrementalDecoder(tok);
        var pieces = ids.Select(decoder.Add).Append(decoder.Flush()).ToList();
        Assert.All(pieces, piece => Assert.DoesNotContain('\uFFFD', piece));
        Assert.Equal(text, string.Concat(pieces));
        Assert.Contains(pieces, piece => piece.Length == 0); // some tokens did end inside a character
    }

    [Fact]
    public void BadOptionsAreRefused()
    {
        using var model = NewModel();
        var g = new TextGenerator(model);
        Assert.Contains("--top-p", Assert.Throws<ArgumentException>(() => g.GenerateTokens(Prompt(2), 1, new SamplingOptions(TopP: 0))).Message);
        Assert.Contains("--temperature", Assert.Throws<ArgumentException>(() => g.GenerateTokens(Prompt(2), 1, new SamplingOptions(Temperature: -1))).Message);
        Assert.Contains("outside the model's vocabulary", Assert.Throws<ArgumentException>(() => g.GenerateTokens(new[] { 500 }, 1, new SamplingOptions())).Message);
    }
}
