using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace PatrickStar.Data;

/// <summary>
/// Hugging Face tokenizer files from a tiktoken encoding's ranks: GPT-2's (vocab.json, merges.txt, tokenizer.json) for the
/// encodings that split text as GPT-2 does, and tokenizer.json with the encoding's own split pattern for the others. tiktoken keeps
/// no merge list: the merge that makes a token is found by running BPE on its bytes with only the ranks below its
/// own, which ends in exactly two parts. Merges listed in rank order make HF's BPE give tiktoken's ids.
/// </summary>
public static class ByteLevelBpeFiles
{
    /// <summary>
    /// Writes the files for a tiktoken encoding whose ranks are the resource <paramref name="resource"/> (a deflated
    /// ".tiktoken" file: base64 token, space, rank per line) of the Microsoft.ML.Tokenizers.Data assembly
    /// <paramref name="assembly"/>. The library keeps the token bytes internal, so they are read from the data itself.
    /// </summary>
    /// <param name="splitPattern">The encoding's pre-tokenizer regex when it is not GPT-2's (cl100k, o200k): tokenizer.json then
    /// splits with it (HF's Split, then ByteLevel without its own regex) and vocab.json/merges.txt, which would split as GPT-2, are not written.</param>
    /// <returns>The file names written.</returns>
    public static IReadOnlyList<string> Write(TiktokenTokenizer tiktoken, string assembly, string resource, string dir, string? splitPattern = null)
    {
        var byChar = ByteChars();
        var tokens = Ranks(assembly, resource).Select(r => (r.Id, Text: Map(r.Bytes, byChar))).OrderBy(t => t.Id).ToList();
        var ranks = tokens.ToDictionary(t => t.Text, t => t.Id, StringComparer.Ordinal);
        var merges = new List<string>();
        foreach (var (id, text) in tokens)
        {
            if (text.Length < 2) continue;
            var parts = MergeBelow(text, id, ranks);
            if (parts.Count != 2) throw new InvalidOperationException($"token {id} is not made by one merge of lower-ranked tokens");
            merges.Add(parts[0] + " " + parts[1]);
        }
        var specials = tiktoken.SpecialTokens ?? new Dictionary<string, int>();

        var vocab = new JsonObject();
        foreach (var (id, text) in tokens) vocab[text] = id;
        foreach (var (text, id) in specials.OrderBy(s => s.Value)) vocab[text] = id;
        if (splitPattern is null)
        {
            File.WriteAllText(Path.Combine(dir, TokenizerFolder.VocabFile), vocab.ToJsonString());
            File.WriteAllText(Path.Combine(dir, TokenizerFolder.MergesFile), "#version: 0.2\n" + string.Join("\n", merges) + "\n");
        }

        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = splitPattern is null };
        JsonNode preTokenizer = splitPattern is null
            ? byteLevel.DeepClone()
            : new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = splitPattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    byteLevel.DeepClone()),
            };
        var added = new JsonArray();
        foreach (var (text, id) in specials.OrderBy(s => s.Value))
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = text, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = true, ["special"] = true,
            });
        var json = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added, ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer, ["post_processor"] = byteLevel.DeepClone(), ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false,
                // As Llama-3's tokenizer.json: a piece that is itself a token is taken whole, as tiktoken does.
                ["ignore_merges"] = splitPattern is not null, ["vocab"] = vocab.DeepClone(),
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray()),
            },
        };
        File.WriteAllText(Path.Combine(dir, TokenizerFolder.JsonFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        return splitPattern is null ? [TokenizerFolder.VocabFile, TokenizerFolder.MergesFile, TokenizerFolder.JsonFile] : [TokenizerFolder.JsonFile];
    }

    private static IEnumerable<(int Id, byte[] Bytes)> Ranks(string assembly, string resource)
    {
        using var packed = System.Reflection.Assembly.Load(new System.Reflection.AssemblyName(assembly)).GetManifestResourceStream(resource)
                           ?? throw new InvalidOperationException($"resource {resource} is missing from {assembly}");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(packed, System.IO.Compression.CompressionMode.Decompress));
        // One base64 token per line after a "Capacity: N" line, ranked by position; "token rank" lines carry their rank.
        var list = new List<(int, byte[])>();
        int next = 0;
        while (reader.ReadLine() is string line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            int rank = space < 0 ? next : int.Parse(line.AsSpan(space + 1), System.Globalization.CultureInfo.InvariantCulture);
            list.Add((rank, Convert.FromBase64String(space < 0 ? line : line[..space])));
            next = rank + 1;
        }
        return list;
    }

    // BPE on the token's characters, merging the lowest-ranked adjacent pair while its rank is below maxRank.
    private static List<string> MergeBelow(string text, int maxRank, Dictionary<string, int> ranks)
    {
        var parts = text.Select(c => c.ToString()).ToList();
        while (parts.Count > 1)
        {
            int best = -1, bestRank = maxRank;
            for (int i = 0; i + 1 < parts.Count; i++)
                if (ranks.TryGetValue(parts[i] + parts[i + 1], out int r) && r < bestRank)
                    (best, bestRank) = (i, r);
            if (best < 0) break;
            parts[best] += parts[best + 1];
            parts.RemoveAt(best + 1);
        }
        return parts;
    }

    private static string Map(ReadOnlySpan<byte> bytes, char[] byChar)
    {
        var sb = new StringBuilder(bytes.Length);
        foreach (byte b in bytes) sb.Append(byChar[b]);
        return sb.ToString();
    }

    /// <summary>GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the rest get 256 upwards.</summary>
    private static char[] ByteChars()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }
}
