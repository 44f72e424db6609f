using System.Text;
using PatrickStar.Data;
using PatrickStar.Models.Generation;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models.Gpt;

/// <summary>How the next token is chosen. Temperature 0 is greedy; TopK 0 and TopP 1 disable those filters.</summary>
public sealed record SamplingOptions(double Temperature = 1.0, int TopK = 0, double TopP = 1.0, long Seed = 0, bool StopAtEndOfText = true)
{
    public void Validate()
    {
        if (double.IsNaN(Temperature) || Temperature < 0) throw new ArgumentException($"--temperature {Temperature}: must be 0 (greedy) or more.");
        if (TopK < 0) throw new ArgumentException($"--top-k {TopK}: must be 0 (off) or more.");
        if (double.IsNaN(TopP) || TopP <= 0 || TopP > 1) throw new ArgumentException($"--top-p {TopP}: must be in (0, 1].");
    }
}

/// <summary>
/// Autoregressive sampling from a causal language model (GPT or LLaMA). With the key/value cache (the default) the
/// prompt runs once and each new token once; past n_positions tokens the window slides, which a cache cannot follow
/// (positions shift), so each step then re-runs the last n_positions tokens, as without the cache. The next token is
/// picked on the host from the last position's logits, with a <see cref="SplitMix64"/> stream so that a seed gives the
/// same text on every machine.
/// </summary>
public sealed class TextGenerator
{
    private readonly ICausalLm lm;
    private readonly Module<Tensor, Tensor> model;
    private readonly Device device;
    private readonly bool useCache;

    public TextGenerator(ICausalLm model, Device? device = null, bool useCache = true)
    {
        lm = model;
        this.model = model.Network;
        this.device = device ?? CPU;
        this.useCache = useCache;
    }

    /// <summary>
    /// Yields up to <paramref name="maxTokens"/> new token ids after <paramref name="prompt"/>, drawn only among
    /// the first <paramref name="vocabLimit"/> ids (those a tokenizer can decode; default: the model's vocabulary).
    /// </summary>
    public IEnumerable<int> GenerateTokens(IReadOnlyList<int> prompt, int maxTokens, SamplingOptions options, int? vocabLimit = null, int? endOfText = null)
    {
        options.Validate();
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty; give at least one token (e.g. --prompt \"Once upon a time\").");
        if (maxTokens < 0) throw new ArgumentException($"--max-tokens {maxTokens}: must be 0 or more.");
        int vocab = lm.VocabSize;
        foreach (int t in prompt)
            if (t < 0 || t >= vocab)
                throw new ArgumentException($"prompt token id {t} is outside the model's vocabulary [0, {vocab}); the model was trained with a smaller vocabulary than the tokenizer's.");
        int limit = Math.Min(vocabLimit ?? vocab, vocab);
        return Generate(prompt.ToList(), maxTokens, options, limit, endOfText);
    }

    private IEnumerable<int> Generate(List<int> tokens, int maxTokens, SamplingOptions options, int limit, int? endOfText)
    {
        var rng = new SplitMix64(options.Seed);
        int context = lm.ContextLength;
        bool wasTraining = model.training;
        model.eval();
        KvCache? cache = null;
        try
        {
            for (int i = 0; i < maxTokens; i++)
            {
                if (cache is not null && tokens.Count > context)
                {
                    cache.Dispose();
                    cache = null;
                }
                else if (useCache && cache is null && tokens.Count <= context) cache = lm.NewCache();
                float[] logits = NextLogits(tokens, context, limit, cache);
                int next = Sample(logits, options, rng);
                if (options.StopAtEndOfText && endOfText == next) yield break;
                tokens.Add(next);
                yield return next;
            }
        }
        finally
        {
            cache?.Dispose();
            if (wasTraining) model.train();
        }
    }

    /// <summary>The logits after the tokens: with a cache, only the tokens it has not seen yet run through the model.</summary>
    private float[] NextLogits(List<int> tokens, int context, int limit, KvCache? cache)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        int start = cache is not null ? (int)cache.Length : Math.Max(0, tokens.Count - context); // the model sees at most n_positions tokens
        var ids = new long[tokens.Count - start];
        for (int i = 0; i < ids.Length; i++) ids[i] = tokens[start + i];
        var input = tensor(ids, new long[] { 1, ids.Length }, ScalarType.Int64).to(device);
        var logits = cache is not null ? lm.Forward(input, cache) : model.call(input);
        var last = logits[0, -1].narrow(0, 0, limit).to(ScalarType.Float32).cpu();
        return last.data<float>().ToArray();
    }

    /// <summary>Picks one token id from logits: greedy at temperature 0, otherwise a draw from the filtered distribution.</summary>
    public static int Sample(float[] logits, SamplingOptions options, SplitMix64 rng)
    {
        if (options.Temperature == 0) return ArgMax(logits);
        var (ids, probs) = Distribution(logits, options.Temperature, options.TopK, options.TopP);
        double u = rng.NextDouble();
        double cumulative = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            cumulative += probs[i];
            if (u < cumulative) return ids[i];
        }
        return ids[^1]; // rounding left the sum a hair below 1
    }

    /// <summary>The first index of the largest logit.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>
    /// The candidates and their probabilities after temperature, top-k and top-p (nucleus) filtering,
    /// most likely first (ties by lower id). Top-p keeps the smallest prefix whose mass reaches p.
    /// </summary>
    public static (int[] Ids, double[] Probabilities) Distribution(float[] logits, double temperature, int topK, double topP)
    {
        if (!(temperature > 0)) throw new ArgumentException("temperature must be positive for sampling; 0 means greedy.");
        int n = logits.Length;
        var order = Enumerable.Range(0, n).ToArray();
        // Stable descending sort: equal logits keep id order, so top-k 1 picks what greedy picks.
        Array.Sort(order, (a, b) => logits[a] != logits[b] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b));
        int keep = topK > 0 ? Math.Min(topK, n) : n;

        double max = logits[order[0]];
        var p = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++)
        {
            p[i] = Math.Exp((logits[order[i]] - max) / temperature);
            sum += p[i];
        }
        for (int i = 0; i < keep; i++) p[i] /= sum;

        if (topP < 1)
        {
            double mass = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++)
            {
                mass += p[i];
                if (mass >= topP) { cut = i + 1; break; }
            }
            keep = cut;
            double kept = p.Take(keep).Sum();
            p = p.Take(keep).Select(x => x / kept).ToArray();
        }
        return (order.Take(keep).ToArray(), p);
    }

    /// <summary>
    /// Generates text after <paramref name="prompt"/>, calling <paramref name="onText"/> with each piece as
    /// soon as it decodes to whole characters (a token may end inside a multi-byte UTF-8 character;
    /// such pieces wait for the token that completes them). Returns the generated text.
    /// </summary>
    public string Generate(ITextTokenizer tokenizer, string prompt, int maxTokens, SamplingOptions options, Action<string>? onText = null)
    {
        var promptIds = tokenizer.Encode(prompt);
        var decoder = new IncrementalDecoder(tokenizer);
        var all = new StringBuilder();
        foreach (int id in GenerateTokens(promptIds, maxTokens, options, tokenizer.VocabSize, tokenizer.EndOfText))
        {
            string piece = decoder.Add(id);
            if (piece.Length == 0) continue;
            all.Append(piece);
            onText?.Invoke(piece);
        }
        string rest = decoder.Flush();
        if (rest.Length > 0)
        {
            all.Append(rest);
            onText?.Invoke(rest);
        }
        return all.ToString();
    }
}

/// <summary>Turns a stream of byte-level BPE tokens into text without splitting multi-byte characters.</summary>
public sealed class IncrementalDecoder
{
    private readonly ITextTokenizer tokenizer;
    private readonly List<int> pending = new();

    public IncrementalDecoder(ITextTokenizer tokenizer) => this.tokenizer = tokenizer;

    /// <summary>Text completed by this token (empty while a character is still incomplete).</summary>
    public string Add(int id)
    {
        pending.Add(id);
        string text = tokenizer.Decode(pending.ToArray());
        // An incomplete UTF-8 sequence decodes to U+FFFD at the end: wait for the bytes that complete it.
        // A few tokens at most make one character; beyond that the replacement character is real output.
        if (text.EndsWith('\uFFFD') && pending.Count < 4) return "";
        pending.Clear();
        return text;
    }

    /// <summary>Whatever is still pending, as the tokenizer decodes it.</summary>
    public string Flush()
    {
        if (pending.Count == 0) return "";
        string text = tokenizer.Decode(pending.ToArray());
        pending.Clear();
        return text;
    }
}
