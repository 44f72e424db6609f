using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>One key set from the command line (a flag or --set key=value), with its value as JSON.</summary>
public sealed record ConfigOverride(string Key, JsonNode? Value);

public static partial class ConfigLoader
{
    // Messages quote values as written; the default encoder would show "a+b.txt" as "a\u002Bb.txt".
    private static readonly JsonSerializerOptions Unescaped = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>--set's "key=value"; the key is a dotted path as in the reference (`pstar config`).</summary>
    /// <exception cref="ConfigException">There is no '=' or no key before it.</exception>
    public static ConfigOverride ParseAssignment(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int equals = text.IndexOf('=');
        if (equals <= 0)
            throw new ConfigException($"--set {text}: write key=value, e.g. --set optimizer.params.lr=3e-4 (`pstar config` lists the keys).");
        return new ConfigOverride(text[..equals].Trim(), ValueFromText(text[(equals + 1)..]));
    }

    /// <summary>
    /// A value as typed on a command line: JSON when it reads as JSON (3e-4, true, null, [0.9, 0.95], "x"), otherwise the
    /// text as a string (gpt2, 2GiB, cuda:0), so that strings need no shell-quoted JSON quotes.
    /// </summary>
    public static JsonNode? ValueFromText(string text)
    {
        try
        {
            return JsonNode.Parse(text, documentOptions: DocumentOptions);
        }
        catch (JsonException)
        {
            return JsonValue.Create(text);
        }
    }

    /// <summary>
    /// Applies command-line overrides onto a configuration through the same path as a file: the same keys, types,
    /// "did you mean" and warnings; all problems at once. A key given twice is refused, as in a file.
    /// </summary>
    /// <exception cref="ConfigException">Unknown keys, wrong types, or a key set twice.</exception>
    public static void ApplyOverrides(TrainingConfig config, IReadOnlyList<ConfigOverride> overrides, string sourceName,
        ICollection<string>? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(overrides);
        if (overrides.Count == 0) return;

        var root = new JsonObject();
        var errors = new List<string>();
        foreach (var (key, value) in overrides)
        {
            string[] parts = key.Split('.');
            if (parts.Any(p => p.Length == 0))
            {
                errors.Add($"'{key}' is not a key; write a dotted path such as optimizer.params.lr (`pstar config` lists the keys).");
                continue;
            }

            JsonObject node = root;
            foreach (string part in parts[..^1])
            {
                if (node[part] is not JsonObject child)
                {
                    // A value already given for the section itself: the clash is reported below as a repeat.
                    if (node.ContainsKey(part)) break;
                    node[part] = child = new JsonObject();
                }
                node = child;
            }

            if (node.ContainsKey(parts[^1]) || node != Section(root, parts))
                errors.Add($"{key} is set more than once on the command line (by a flag and --set, or twice); keep one.");
            else
                node[parts[^1]] = value?.DeepClone();
        }

        if (errors.Count > 0)
            throw new ConfigException(ConfigText.FormatErrors(sourceName, errors));
        Apply(root.ToJsonString(Unescaped), sourceName, config, warnings);
    }

    /// <summary>The object a dotted key's last part belongs in, or null where a value stands in its way.</summary>
    private static JsonObject? Section(JsonObject root, string[] parts)
    {
        JsonObject? node = root;
        foreach (string part in parts[..^1])
            node = node?[part] as JsonObject;
        return node;
    }
}
