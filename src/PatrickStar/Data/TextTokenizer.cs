using Microsoft.ML.Tokenizers;

namespace PatrickStar.Data;

/// <summary>Turns text into token ids and back.</summary>
public interface ITextTokenizer
{
    /// <summary>Identifies the vocabulary; part of the token cache key.</summary>
    string Id { get; }
    int VocabSize { get; }
    /// <summary>The token that separates documents.</summary>
    int EndOfText { get; }
    int[] Encode(string text);
    string Decode(ReadOnlySpan<int> ids);
}

/// <summary>GPT-2's byte-level BPE (50,257 tokens), from Microsoft.ML.Tokenizers' Gpt2 data package.</summary>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    private static readonly Lazy<Gpt2Tokenizer> Shared = new(() => new Gpt2Tokenizer());
    private readonly TiktokenTokenizer tokenizer;

    private Gpt2Tokenizer()
    {
        tokenizer = TiktokenTokenizer.CreateForModel("gpt2");
    }

    /// <summary>The tokenizer is immutable and thread-safe; its vocabulary is loaded once.</summary>
    public static Gpt2Tokenizer Instance => Shared.Value;

    /// <summary>The library's tokenizer, for writing GPT-2's tokenizer files.</summary>
    public TiktokenTokenizer Inner => tokenizer;

    public string Id => "gpt2-bpe";
    public int VocabSize => 50257;
    public int EndOfText => 50256;

    public int[] Encode(string text) => tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true).ToArray();

    public string Decode(ReadOnlySpan<int> ids) => tokenizer.Decode(ids.ToArray());
}
