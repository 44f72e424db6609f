using System.Globalization;
using System.Text.Json;

namespace PatrickStar.Config;

/// <summary>How configuration values and problems are written in messages and in the reference.</summary>
internal static class ConfigText
{
    public static string FormatErrors(string sourceName, IReadOnlyList<string> errors) =>
        errors.Count == 1
            ? $"{sourceName}: {errors[0]}"
            : $"{sourceName}: {errors.Count} problems:" + string.Concat(errors.Select(e => $"{Environment.NewLine}  - {e}"));

    /// <summary>A configuration value the way it would be written in JSON.</summary>
    public static string Show(object? value) => value switch
    {
        null => "null",
        // Quoted but not JSON-escaped: escaping would turn "a+b.txt" into "a\u002Bb.txt" in messages.
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>A JSON value exactly as the user wrote it, on one line and shortened if long.</summary>
    public static string Written(JsonElement value)
    {
        const int maxLength = 60;
        string raw = string.Join(' ', value.GetRawText().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        return raw.Length <= maxLength ? raw : raw[..(maxLength - 3)] + "...";
    }

    public static string LastSegment(string key) => key[(key.LastIndexOf('.') + 1)..];

    /// <summary>Levenshtein distance, for "did you mean" suggestions on unknown keys.</summary>
    public static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
            previous[j] = j;

        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j] + 1, current[j - 1] + 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
