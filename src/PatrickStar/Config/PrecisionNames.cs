using System.Linq;

namespace PatrickStar.Config;

/// <summary>The command-line spelling of each <see cref="Precision"/>, shared by the commands that take --precision.</summary>
public static class PrecisionNames
{
    private static readonly (string Name, Precision Precision)[] Table =
    {
        ("fp32", Precision.Fp32), ("bf16", Precision.Bf16), ("bf16-fp32", Precision.Bf16Fp32), ("fp16", Precision.Fp16),
    };

    public static string[] All => Table.Select(t => t.Name).ToArray();

    public static Precision Parse(string name) =>
        Table.FirstOrDefault(t => t.Name == name) is { Name: not null } hit ? hit.Precision
            : throw new ArgumentException($"--precision {name} is not known; use one of: {string.Join(", ", All)}.");

    public static string Name(Precision p) => Table.First(t => t.Precision == p).Name;

    /// <summary>The config keys that select a precision, in an order that never has both fp16 and bf16 on at once.</summary>
    public static IEnumerable<ConfigOverride> Overrides(Precision p)
    {
        static ConfigOverride Set(string key, bool on) => new(key, System.Text.Json.Nodes.JsonValue.Create(on));
        if (p == Precision.Fp16) return [Set("bf16.enabled", false), Set("fp16.enabled", true)];
        if (p == Precision.Fp32) return [Set("fp16.enabled", false), Set("bf16.enabled", false)];
        return [Set("fp16.enabled", false), Set("bf16.enabled", true), Set("bf16.fp32_compute", p == Precision.Bf16Fp32)];
    }
}
