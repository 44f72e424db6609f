using System.Globalization;
using System.Text.Json;

namespace PatrickStar.Config;

/// <summary>
/// Collects the problems of one parse so they are all reported together, the warnings (one per key), and the values
/// that are resolved only once every key is in (keys may come in any order).
/// </summary>
internal sealed class ConfigParseState
{
    public List<string> Errors { get; } = new();

    /// <summary>Warnings by key, in the order found: each key warns once however often it is seen.</summary>
    public Dictionary<string, string> Warnings { get; } = new(StringComparer.Ordinal);

    /// <summary>Every key given (leaf or section), so that aliases and derived values can see what was written.</summary>
    public HashSet<string> Present { get; } = new(StringComparer.Ordinal);

    public int? ZeroStage { get; set; }

    /// <summary>zero_optimization.offload_param.device / offload_optimizer.device by key: "none", "cpu" or "nvme".</summary>
    public Dictionary<string, string> OffloadDevices { get; } = new(StringComparer.Ordinal);

    public double? WarmupMaxLr { get; set; }

    public bool? AdamWMode { get; set; }

    /// <summary>Keys that already have an error, so follow-on checks can stay quiet about them.</summary>
    public HashSet<string> FailedKeys { get; } = new(StringComparer.Ordinal);

    /// <summary>bf16.fp32_compute as read; resolved once every key is in, since bf16.enabled may come after it.</summary>
    public bool? Fp32Compute { get; set; }

    public void Error(string key, string message)
    {
        Errors.Add(message);
        FailedKeys.Add(key);
    }

    public void Warn(string key, string message) => Warnings.TryAdd(key, message);

    /// <summary>A name from a fixed list, case-insensitively; the canonical spelling, or null after reporting the problem.</summary>
    public string? ReadChoice(JsonElement value, string key, IReadOnlyList<string> names)
    {
        string? match = value.ValueKind == JsonValueKind.String
            ? names.FirstOrDefault(n => n.Equals(value.GetString(), StringComparison.OrdinalIgnoreCase))
            : null;
        if (match is null)
            TypeError(key, value, $"one of {string.Join(", ", names.Select(n => $"\"{n}\""))} (case-insensitive)");
        return match;
    }

    public void TypeError(string key, JsonElement value, string expected)
    {
        // "lr": "1e-3" is a common slip when copying from YAML or shell scripts.
        bool quotedNumber = value.ValueKind == JsonValueKind.String
            && (expected.Contains("number", StringComparison.Ordinal) || expected.Contains("integer", StringComparison.Ordinal))
            && double.TryParse(value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out _);
        string hint = quotedNumber ? " Remove the quotes." : "";
        Error(key, $"{key} is {ConfigText.Written(value)}, but it must be {expected}.{hint}");
    }

    /// <summary>Reads a whole number; 3.0 is accepted since JSON writers often emit it, 3.5 is not.</summary>
    public bool ReadInteger(JsonElement value, string key, long min, long max, out long result)
    {
        result = 0;
        if (value.ValueKind != JsonValueKind.Number)
        {
            TypeError(key, value, "an integer");
            return false;
        }

        // Plain integers land here; "3.0", "3e2" and anything beyond 64 bits do not.
        bool fitsLong = value.TryGetInt64(out result);
        if (!fitsLong)
        {
            if (value.TryGetDouble(out double number) && double.IsFinite(number))
            {
                if (Math.Floor(number) != number)
                {
                    TypeError(key, value, "an integer");
                    return false;
                }

                // long.MinValue and long.MaxValue convert to exactly -2^63 and 2^63, so this bounds the cast.
                fitsLong = number >= long.MinValue && number < long.MaxValue;
                if (fitsLong)
                    result = (long)number;
            }
        }

        if (fitsLong && result >= min && result <= max)
            return true;
        Error(key, $"{key} is {ConfigText.Written(value)}, which is outside the integer range {min}..{max}.");
        return false;
    }

    public bool ReadNumber(JsonElement value, string key, out double result)
    {
        result = 0;
        if (value.ValueKind != JsonValueKind.Number)
        {
            TypeError(key, value, "a number");
            return false;
        }

        if (value.TryGetDouble(out result) && double.IsFinite(result))
            return true;
        Error(key, $"{key} is {ConfigText.Written(value)}, which is too large for a number.");
        return false;
    }

    public bool ReadBool(JsonElement value, string key, out bool result)
    {
        result = value.ValueKind == JsonValueKind.True;
        if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
            return true;
        TypeError(key, value, "true or false");
        return false;
    }

    public bool ReadString(JsonElement value, string key, bool allowNull, out string? result)
    {
        result = null;
        if (value.ValueKind == JsonValueKind.String)
        {
            result = value.GetString();
            return true;
        }

        if (allowNull && value.ValueKind == JsonValueKind.Null)
            return true;
        TypeError(key, value, allowNull ? "a string or null" : "a string");
        return false;
    }

    public bool ReadBetas(JsonElement value, string key, out double beta1, out double beta2)
    {
        beta1 = beta2 = 0;
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() != 2
            || value.EnumerateArray().Any(item => item.ValueKind != JsonValueKind.Number))
        {
            TypeError(key, value, "an array of exactly two numbers, e.g. [0.9, 0.95]");
            return false;
        }

        // "&" rather than "&&" so that a problem in either element is reported.
        return ReadNumber(value[0], $"{key}[0]", out beta1) & ReadNumber(value[1], $"{key}[1]", out beta2);
    }

    public bool ReadStringList(JsonElement value, string key, out List<string> result)
    {
        result = new List<string>();
        if (value.ValueKind != JsonValueKind.Array)
        {
            TypeError(key, value, "an array of strings, e.g. [\"train.txt\"]");
            return false;
        }

        bool ok = true;
        int index = 0;
        foreach (JsonElement item in value.EnumerateArray())
        {
            if (ReadString(item, $"{key}[{index}]", allowNull: false, out string? text))
                result.Add(text!);
            else
                ok = false;
            index++;
        }

        return ok;
    }
}
