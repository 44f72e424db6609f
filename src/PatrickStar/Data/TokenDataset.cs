using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Data;

public enum Split { Train, Validation }

/// <summary>Bad or insufficient training data; the message names the file and the fix.</summary>
public sealed class DataException : Exception
{
    public DataException(string message) : base(message) { }
}

/// <summary>
/// A token stream split into a training part and a held-out validation part (the last fraction of
/// every source, so both splits see every file). Batches are random windows of seq+1 tokens:
/// input = tokens[i .. i+seq), target = tokens[i+1 .. i+seq+1).
/// </summary>
public sealed class TokenDataset
{
    private readonly int[] train;
    private readonly int[] validation;

    public string Description { get; }
    public int VocabSize { get; }

    private TokenDataset(int[] train, int[] validation, int vocabSize, string description)
    {
        this.train = train;
        this.validation = validation;
        VocabSize = vocabSize;
        Description = description;
    }

    public int TrainTokens => train.Length;
    public int ValidationTokens => validation.Length;

    /// <summary>Tokens of one split, read-only.</summary>
    public ReadOnlySpan<int> Tokens(Split split) => split == Split.Train ? train : validation;

    /// <summary>
    /// Tokenizes data files (.txt, .jsonl, .parquet; token caches under the cache folder) and reads pre-tokenized .bin
    /// files; folders contribute their data files, and the others they hold are named in a warning.
    /// </summary>
    public static TokenDataset FromFiles(IReadOnlyList<string> paths, ITextTokenizer tokenizer, double validationFraction, DataOptions? options = null)
    {
        options ??= new DataOptions();
        var files = DataFiles.Resolve(paths, options);
        var parts = new List<(int[] Train, int[] Val)>();
        foreach (var file in files)
        {
            // A .bin file already separates its documents; text gets the end-of-text token after each file.
            bool bin = DataFiles.Is(file, ".bin");
            int[] tokens = bin ? TokenBin.Read(file, options.BinDType, tokenizer.VocabSize) : DocumentFiles.Tokens(file, tokenizer, options);
            parts.Add(SplitTokens(tokens, validationFraction, bin ? -1 : tokenizer.EndOfText));
        }
        string what = files.Count == 1 ? files[0] : $"{files.Count} files";
        return Combine(parts, tokenizer.VocabSize, what);
    }

    /// <summary>A dataset from text held in memory (the built-in corpus); cached under the given key path.</summary>
    public static TokenDataset FromText(string text, string name, ITextTokenizer tokenizer, double validationFraction, string? cacheKeyPath = null, string? cacheDir = null)
    {
        if (string.IsNullOrWhiteSpace(text)) throw new DataException($"the text '{name}' is empty.");
        byte[] content = Encoding.UTF8.GetBytes(text);
        int[] tokens = cacheKeyPath is null
            ? TextFile.EncodeText(text, tokenizer)
            : TokenCache.GetOrEncode(cacheKeyPath, TokenCache.Sha256(content), tokenizer.Id, cacheDir ?? DataOptions.DefaultCacheDir(), () => TextFile.EncodeText(text, tokenizer));
        return Combine(new List<(int[], int[])> { SplitTokens(tokens, validationFraction, tokenizer.EndOfText) }, tokenizer.VocabSize, name);
    }

    /// <summary>A dataset over given token ids (tests, pre-tokenized data).</summary>
    public static TokenDataset FromTokens(int[] tokens, int vocabSize, double validationFraction, string name = "tokens")
    {
        foreach (int t in tokens)
            if (t < 0 || t >= vocabSize) throw new DataException($"token id {t} in '{name}' is outside the vocabulary [0, {vocabSize}).");
        return Combine(new List<(int[], int[])> { SplitTokens(tokens, validationFraction, -1) }, vocabSize, name);
    }

    private static (int[] Train, int[] Val) SplitTokens(int[] tokens, double validationFraction, int separator)
    {
        int val = (int)Math.Round(tokens.Length * validationFraction);
        int cut = tokens.Length - val;
        var trainPart = tokens[..cut];
        var valPart = tokens[cut..];
        // Documents are joined by the end-of-text token so no window silently runs from one file into the next.
        if (separator >= 0)
        {
            trainPart = trainPart.Append(separator).ToArray();
            valPart = valPart.Append(separator).ToArray();
        }
        return (trainPart, valPart);
    }

    private static TokenDataset Combine(List<(int[] Train, int[] Val)> parts, int vocab, string description)
        => new(parts.SelectMany(p => p.Train).ToArray(), parts.SelectMany(p => p.Val).ToArray(), vocab, description);

    /// <summary>Throws when a split is too short for windows of <paramref name="seq"/> tokens.</summary>
    public void EnsureFits(int seq)
    {
        foreach (var split in new[] { Split.Train, Split.Validation })
        {
            int n = Tokens(split).Length;
            if (n < seq + 1)
                throw new DataException($"the {split.ToString().ToLowerInvariant()} split of {Description} has {n:N0} tokens, fewer than " +
                                        $"seq_len + 1 = {seq + 1:N0}. Give more text, a shorter --seq, or a different data.validation_fraction.");
        }
    }

    /// <summary>
    /// A batch of random windows, drawn with <paramref name="rng"/>: inputs and targets as int64 tensors
    /// of shape [batch, seq] on <paramref name="device"/>.
    /// </summary>
    public (Tensor Input, Tensor Target) Batch(Split split, int batch, int seq, SplitMix64 rng, Device device)
    {
        var source = Tokens(split);
        if (source.Length < seq + 1) EnsureFits(seq);
        var x = new long[batch * seq];
        var y = new long[batch * seq];
        long windows = source.Length - seq; // valid starts: 0 .. length - seq - 1
        for (int b = 0; b < batch; b++)
        {
            int start = (int)rng.NextBelow((ulong)windows);
            for (int t = 0; t < seq; t++)
            {
                x[b * seq + t] = source[start + t];
                y[b * seq + t] = source[start + t + 1];
            }
        }
        var input = tensor(x, new long[] { batch, seq }, ScalarType.Int64);
        var target = tensor(y, new long[] { batch, seq }, ScalarType.Int64);
        if (device.type != DeviceType.CPU)
        {
            var (di, dt) = (input.to(device), target.to(device));
            input.Dispose();
            target.Dispose();
            return (di, dt);
        }
        return (input, target);
    }
}

/// <summary>A small, fast, seedable PRNG whose sequence is the same on every platform and runtime.</summary>
public sealed class SplitMix64
{
    private ulong state;

    public SplitMix64(long seed) { state = unchecked((ulong)seed); }

    public ulong Next()
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, bound) without modulo bias (rejection sampling).</summary>
    public ulong NextBelow(ulong bound)
    {
        if (bound == 0) throw new ArgumentOutOfRangeException(nameof(bound));
        ulong limit = ulong.MaxValue - ulong.MaxValue % bound;
        ulong r;
        do { r = Next(); } while (r >= limit);
        return r % bound;
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>The state, to save and restore the stream position.</summary>
    public ulong State { get => state; set => state = value; }
}
