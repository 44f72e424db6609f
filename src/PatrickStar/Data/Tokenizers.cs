using Microsoft.ML.Tokenizers;

namespace PatrickStar.Data;

/// <summary>Any Microsoft.ML.Tokenizers tokenizer behind <see cref="ITextTokenizer"/>: ids as the library gives them.</summary>
public sealed class LibraryTokenizer : ITextTokenizer
{
    private readonly Tokenizer inner;

    public LibraryTokenizer(Tokenizer inner, string id, int vocabSize, int endOfText)
    {
        this.inner = inner;
        Id = id;
        VocabSize = vocabSize;
        EndOfText = endOfText;
    }

    public string Id { get; }
    public int VocabSize { get; }
    public int EndOfText { get; }

    /// <summary>The library's tokenizer, for writing its files.</summary>
    public Tokenizer Inner => inner;

    public int[] Encode(string text) => inner.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true).ToArray();

    public string Decode(ReadOnlySpan<int> ids) => inner.Decode(ids.ToArray());
}

/// <summary>
/// The tokenizers a run can name: the tiktoken encodings gpt2, r50k, cl100k and o200k (vocabularies from the
/// Microsoft.ML.Tokenizers.Data packages, no network), or a folder holding a model's own tokenizer files.
/// </summary>
public static class Tokenizers
{
    public const string DefaultName = "gpt2";
    public static readonly string[] Names = ["gpt2", "r50k", "cl100k", "o200k"];

    private static readonly Dictionary<string, Lazy<ITextTokenizer>> Named = new(StringComparer.OrdinalIgnoreCase)
    {
        ["gpt2"] = new(() => Gpt2Tokenizer.Instance),
        // Vocabulary sizes are tiktoken's n_vocab: the ranks plus the special tokens above them (the library keeps its tables internal).
        ["r50k"] = new(() => Tiktoken("r50k", TiktokenTokenizer.CreateForEncoding("r50k_base"), 50_257)),
        ["cl100k"] = new(() => Tiktoken("cl100k", TiktokenTokenizer.CreateForEncoding("cl100k_base"), 100_277)),
        ["o200k"] = new(() => Tiktoken("o200k", TiktokenTokenizer.CreateForEncoding("o200k_base"), 200_019)),
    };

    private static ITextTokenizer Tiktoken(string name, TiktokenTokenizer t, int vocabSize)
    {
        int eot = t.SpecialTokens is not null && t.SpecialTokens.TryGetValue("<|endoftext|>", out int e) ? e : -1;
        return new LibraryTokenizer(t, $"{name}-tiktoken", vocabSize, eot);
    }

    /// <summary>
    /// The tokenizer <paramref name="spec"/> names: one of <see cref="Names"/>, or a folder with tokenizer.json,
    /// tokenizer.model or vocab.json + merges.txt. Null means the model folder's own tokenizer when
    /// <paramref name="modelFolder"/> has one, else gpt2.
    /// </summary>
    public static ITextTokenizer Resolve(string? spec, string? modelFolder = null)
    {
        if (spec is null)
            return modelFolder is not null && TokenizerFolder.HasTokenizer(modelFolder) ? TokenizerFolder.Load(modelFolder) : Gpt2Tokenizer.Instance;
        if (Named.TryGetValue(spec, out var named)) return named.Value;
        if (Directory.Exists(spec)) return TokenizerFolder.Load(spec);
        throw new DataException($"tokenizer '{spec}' is neither a known encoding nor a folder; use one of {string.Join(", ", Names)} " +
                                "or a folder with tokenizer.json, tokenizer.model or vocab.json + merges.txt.");
    }

    /// <summary>
    /// The ids a model folder's bos_token_id and eos_token_id name: a SentencePiece tokenizer's &lt;s&gt; and &lt;/s&gt;; for the
    /// others, GPT-2's convention of one end-of-text token for both (null when the tokenizer has none).
    /// </summary>
    public static (int? Bos, int? Eos) BeginAndEnd(ITextTokenizer tokenizer)
    {
        if (tokenizer is LibraryTokenizer { Inner: SentencePieceTokenizer sp }) return (sp.BeginningOfSentenceId, sp.EndOfSentenceId);
        int? eot = tokenizer.EndOfText >= 0 ? tokenizer.EndOfText : null;
        return (eot, eot);
    }

    /// <summary>A tokenizer whose ids the model cannot embed is refused before any work, naming both sizes and the fix.</summary>
    public static void EnsureFitsModel(ITextTokenizer tokenizer, int modelVocabSize, string modelSource)
    {
        if (tokenizer.VocabSize > modelVocabSize)
            throw new DataException($"tokenizer {tokenizer.Id} has {tokenizer.VocabSize:N0} tokens but the model ({modelSource}) has vocab_size = {modelVocabSize:N0}; " +
                                    $"use the model's own tokenizer (--tokenizer), or a model with model.vocab_size of at least {tokenizer.VocabSize:N0}.");
    }
}
