using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>
/// The second, strict reading of a text the key table's walk has accepted: into <see cref="DeepSpeedSettings"/> with the
/// source-generated context. The two describe the same keys and types, so a refusal here is a bug in pstar (a key added
/// to one and not the other), never the user's mistake.
/// </summary>
internal static class SettingsCheck
{
    private static readonly HashSet<string> TakesAuto =
        ConfigKeys.All.Where(f => f.AcceptsAuto).Select(f => f.Key).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// Reads <paramref name="root"/> into the record, after removing what the walk accepts and deliberately does not keep:
    /// DeepSpeed's ignored keys (<see cref="DeepSpeedKeys.Ignored"/>), "auto" values (the default) and DeepSpeed's
    /// activation_checkpointing object (a warning).
    /// </summary>
    /// <exception cref="ConfigException">The record refuses what the walk accepted.</exception>
    public static void Verify(JsonElement root, string sourceName)
    {
        var node = JsonObject.Create(root)!.DeepClone().AsObject();
        RemoveUnkept(node, "");
        try
        {
            JsonSerializer.Deserialize(node, ConfigJsonContext.Default.DeepSpeedSettings);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{sourceName}: the key table accepts this configuration but the settings record refuses it "
                + $"({e.Message}); this is a bug in pstar: please report it with the file.", e);
        }
    }

    private static void RemoveUnkept(JsonObject obj, string path)
    {
        foreach (var (name, value) in obj.ToList())
        {
            string key = path.Length == 0 ? name : $"{path}.{name}";
            bool unkept = DeepSpeedKeys.Ignored.ContainsKey(key)
                || (TakesAuto.Contains(key) && value is JsonValue v && v.TryGetValue(out string? text) && text == "auto")
                || (key == "activation_checkpointing" && value is JsonObject);
            if (unkept) obj.Remove(name);
            else if (value is JsonObject section) RemoveUnkept(section, key);
        }
    }
}
