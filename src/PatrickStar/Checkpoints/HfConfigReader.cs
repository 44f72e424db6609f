using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Checkpoints;

/// <summary>
/// Typed reads of an HF config.json object that collect every problem (wrong type, missing key) in <see cref="Problems"/>,
/// so that a family reports them all in one line naming the file.
/// </summary>
public sealed class HfConfigReader
{
    public JsonObject Root { get; }
    public List<string> Problems { get; } = new();

    private HfConfigReader(JsonObject root) => Root = root;

    /// <summary>Parses <paramref name="path"/>; not JSON, or not an object, is refused naming <paramref name="schema"/> (e.g. "HF's GPT2Config").</summary>
    public static HfConfigReader Open(string path, string schema)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ModelFileException($"'{path}' is not valid JSON ({e.Message}).", e);
        }
        if (root is not JsonObject o) throw new ModelFileException($"'{path}' must hold a JSON object ({schema}).");
        return new HfConfigReader(o);
    }

    /// <summary>An integer at <paramref name="key"/> of <paramref name="obj"/> (default: the root); null when absent or not an integer.</summary>
    public int? Int(string key, JsonObject? obj = null)
    {
        if ((obj ?? Root)[key] is not JsonValue v) return null;
        if (v.TryGetValue(out int i)) return i;
        if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        Problems.Add($"\"{key}\" = {v.ToJsonString()} is not an integer");
        return null;
    }

    public double? Real(string key, JsonObject? obj = null) => (obj ?? Root)[key] is JsonValue v && v.TryGetValue(out double d) ? d : null;

    public string? Str(string key, JsonObject? obj = null) => (obj ?? Root)[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    public bool? Bool(string key) => Root[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;

    /// <summary>An integer that must be present (a missing one is a problem; 0 then).</summary>
    public int Required(string key)
    {
        int? v = Int(key);
        if (v is null && Root[key] is null) Problems.Add($"\"{key}\" is missing");
        return v ?? 0;
    }
}
