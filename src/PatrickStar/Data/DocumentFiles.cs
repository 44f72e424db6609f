namespace PatrickStar.Data;

/// <summary>The tokens of one text-bearing data file (.txt, .jsonl, .parquet), from the token cache when it matches.</summary>
public static class DocumentFiles
{
    public static int[] Tokens(string file, ITextTokenizer tokenizer, DataOptions options)
    {
        // Read in blocks, twice at most (hash, then tokens on a cache miss): files may be larger than memory allows at once.
        string hash = TextFile.Hash(file);
        if (DataFiles.Is(file, ".jsonl"))
            return TokenCache.GetOrEncode(file, hash, $"{tokenizer.Id}.{Safe(options.TextField)}", options.ResolvedCacheDir,
                () => JsonlText.Encode(file, options.TextField, tokenizer));
        if (DataFiles.Is(file, ".parquet"))
            return TokenCache.GetOrEncode(file, hash, $"{tokenizer.Id}.{Safe(options.TextField)}", options.ResolvedCacheDir,
                () => ParquetText.Encode(file, options.TextField, tokenizer));
        return TokenCache.GetOrEncode(file, hash, tokenizer.Id, options.ResolvedCacheDir, () => TextFile.Encode(file, tokenizer));
    }

    // A field name goes into a file name: keep letters, digits, '-' and '_'.
    private static string Safe(string field) => new(field.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray());

    /// <summary>Documents encoded one by one and joined by the end-of-text token (none when the tokenizer has no such token).</summary>
    internal static void AppendDocument(List<int> tokens, string text, ITextTokenizer tokenizer)
    {
        if (tokens.Count > 0 && tokenizer.EndOfText >= 0) tokens.Add(tokenizer.EndOfText);
        tokens.AddRange(TextFile.EncodeText(text, tokenizer));
    }
}
