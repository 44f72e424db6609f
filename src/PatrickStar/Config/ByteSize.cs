using System.Globalization;

namespace PatrickStar.Config;

/// <summary>Sizes written with units: "2GiB", "1.5 GB", "512MiB", "64M", "4096". Binary (Ki, Mi, Gi, Ti) and decimal (K, M, G, T) units.</summary>
public static class ByteSize
{
    public static bool TryParse(string text, out long value)
    {
        value = 0;
        string s = text.Trim().Replace("_", "");
        int split = 0;
        while (split < s.Length && (char.IsDigit(s[split]) || s[split] == '.')) split++;
        if (split == 0 || !double.TryParse(s[..split], NumberStyles.Float, CultureInfo.InvariantCulture, out double number)) return false;
        string unit = s[split..].Trim().ToUpperInvariant();
        if (unit.EndsWith('B')) unit = unit[..^1];
        double scale = unit switch
        {
            "" => 1,
            "K" => 1e3, "M" => 1e6, "G" => 1e9, "T" => 1e12,
            "KI" => 1L << 10, "MI" => 1L << 20, "GI" => 1L << 30, "TI" => 1L << 40,
            _ => double.NaN,
        };
        if (double.IsNaN(scale)) return false;
        double result = Math.Round(number * scale);
        if (result < 0 || result > long.MaxValue) return false;
        value = (long)result;
        return true;
    }

    public static long Parse(string text, string what) =>
        TryParse(text, out long v) ? v : throw new ArgumentException($"{what} '{text}' is not a size; write a number of bytes or e.g. 2GiB, 512MB, 64M.");
}
