using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>
/// A numeric range, declared once per key in the key table: <see cref="ConfigLoader.Validate"/> checks it and the
/// reference (`pstar config`, README) prints it, so the two cannot disagree.
/// </summary>
internal sealed record Bounds(double? Min = null, double? Max = null, bool MinOpen = false, bool MaxOpen = false, string Note = "")
{
    public static Bounds AtLeast(double min, string note = "") => new(min, Note: note);
    public static Bounds Above(double min, string note = "") => new(min, MinOpen: true, Note: note);
    public static Bounds Within(double min, double max, bool minOpen = false, bool maxOpen = false) => new(min, max, minOpen, maxOpen);

    /// <summary>Whether a value lies inside; NaN and infinities never do.</summary>
    public bool Contains(double v) =>
        double.IsFinite(v)
        && (Min is not double lo || (MinOpen ? v > lo : v >= lo))
        && (Max is not double hi || (MaxOpen ? v < hi : v <= hi));

    /// <summary>The range as a reader writes it: "&gt;= 1", "&gt; 0", "in [0, 1)".</summary>
    public string Text => (Min, Max) switch
    {
        (double lo, double hi) => $"in {(MinOpen ? '(' : '[')}{ConfigText.Show(lo)}, {ConfigText.Show(hi)}{(MaxOpen ? ')' : ']')}",
        (double lo, null) => $"{(MinOpen ? ">" : ">=")} {ConfigText.Show(lo)}",
        (null, double hi) => $"{(MaxOpen ? "<" : "<=")} {ConfigText.Show(hi)}",
        _ => "any number",
    };
}

/// <summary>One range a key's value must lie in (betas has two: one per element).</summary>
internal sealed record RangeCheck(string Key, Bounds Range, Func<TrainingConfig, double?> Get);

/// <summary>One configuration key: how it is documented, how a JSON value is applied, and what range it must lie in.</summary>
internal sealed record Field(
    string Key,
    string Type,
    Func<TrainingConfig, string> Default,
    string Meaning,
    Action<ConfigParseState, JsonElement, TrainingConfig> Apply)
{
    /// <summary>The field's current value as JSON; null for keys that are not stored (aliases, DeepSpeed switches).</summary>
    public Func<TrainingConfig, JsonNode?>? Value { get; init; }

    public IReadOnlyList<RangeCheck> Ranges { get; init; } = [];

    /// <summary>DeepSpeed writes "auto" for values the integration should choose: such a key keeps our default.</summary>
    public bool AcceptsAuto { get; init; } = true;

    /// <summary>
    /// Left out of <see cref="ConfigLoader.ToJson"/> while it has its default, so that checkpoints saved before the key
    /// existed still match a run that does not use it (see RunIdentity).
    /// </summary>
    public bool OmitWhenDefault { get; init; }

    /// <summary>Type and range together, as the reference shows them: "int, &gt;= 1".</summary>
    public string TypeAndRange => Ranges.Count == 0 ? Type : $"{Type}, {Ranges[0].Range.Text}{Ranges[0].Range.Note}";
}

/// <summary>The factories of the key table: one per JSON shape.</summary>
internal static class Fields
{
    private static RangeCheck[] Check(string key, Bounds? range, Func<TrainingConfig, double?> get) =>
        range is null ? [] : [new RangeCheck(key, range, get)];

    public static Field Int(string key, Func<TrainingConfig, int> get, Action<TrainingConfig, int> set, string meaning, Bounds? range = null) =>
        new(key, "int", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadInteger(value, key, int.MinValue, int.MaxValue, out long v)) set(c, (int)v);
        }) { Value = c => JsonValue.Create(get(c)), Ranges = Check(key, range, c => get(c)) };

    public static Field NullableInt(string key, Func<TrainingConfig, int?> get, Action<TrainingConfig, int?> set, string meaning,
        Bounds? range = null) =>
        new(key, "int | null", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null) set(c, null);
            else if (state.ReadInteger(value, key, int.MinValue, int.MaxValue, out long v)) set(c, (int)v);
        }) { Value = c => get(c) is int v ? JsonValue.Create(v) : null, Ranges = Check(key, range, c => get(c)) };

    public static Field Long(string key, Func<TrainingConfig, long> get, Action<TrainingConfig, long> set, string meaning) =>
        new(key, "int (64-bit)", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadInteger(value, key, long.MinValue, long.MaxValue, out long v)) set(c, v);
        }) { Value = c => JsonValue.Create(get(c)) };

    public static Field Number(string key, Func<TrainingConfig, double> get, Action<TrainingConfig, double> set, string meaning,
        Bounds? range = null) =>
        new(key, "number", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadNumber(value, key, out double v)) set(c, v);
        }) { Value = c => JsonValue.Create(get(c)), Ranges = Check(key, range, c => get(c)) };

    public static Field NullableNumber(string key, Func<TrainingConfig, double?> get, Action<TrainingConfig, double?> set,
        string meaning, Bounds? range = null) =>
        new(key, "number | null", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null) set(c, null);
            else if (state.ReadNumber(value, key, out double v)) set(c, v);
        }) { Value = c => get(c) is double v ? JsonValue.Create(v) : null, Ranges = Check(key, range, get) };

    public static Field Bool(string key, Func<TrainingConfig, bool> get, Action<TrainingConfig, bool> set, string meaning) =>
        new(key, "bool", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadBool(value, key, out bool v)) set(c, v);
        }) { Value = c => JsonValue.Create(get(c)) };

    public static Field NullableBool(string key, Func<TrainingConfig, bool?> get, Action<TrainingConfig, bool?> set, string meaning) =>
        new(key, "bool | null", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null) set(c, null);
            else if (state.ReadBool(value, key, out bool v)) set(c, v);
        }) { Value = c => get(c) is bool v ? JsonValue.Create(v) : null };

    public static Field String(string key, Func<TrainingConfig, string> get, Action<TrainingConfig, string> set, string meaning) =>
        new(key, "string", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadString(value, key, allowNull: false, out string? v)) set(c, v!);
        }) { Value = c => JsonValue.Create(get(c)), AcceptsAuto = false };

    public static Field NullableString(string key, Func<TrainingConfig, string?> get, Action<TrainingConfig, string?> set,
        string meaning) =>
        new(key, "string | null", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadString(value, key, allowNull: true, out string? v)) set(c, v);
        }) { Value = c => get(c) is string v ? JsonValue.Create(v) : null, AcceptsAuto = false };

    public static Field StringList(string key, Func<TrainingConfig, List<string>> get, Action<TrainingConfig, List<string>> set,
        string meaning) =>
        new(key, "[string, ...]", c => "[" + string.Join(", ", get(c).Select(ConfigText.Show)) + "]", meaning, (state, value, c) =>
        {
            if (state.ReadStringList(value, key, out List<string> v)) set(c, v);
        }) { Value = c => new JsonArray(get(c).Select(x => (JsonNode?)JsonValue.Create(x)).ToArray()), AcceptsAuto = false };

    /// <summary>A byte or element count: an integer, a string with a unit ("2GiB", "512MB", "64M"), or null.</summary>
    public static Field Size(string key, Func<TrainingConfig, long?> get, Action<TrainingConfig, long?> set, string meaning,
        Bounds range) =>
        new(key, "int | \"<n><unit>\" | null", c => ConfigText.Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null)
                set(c, null);
            else if (value.ValueKind == JsonValueKind.String)
            {
                if (ByteSize.TryParse(value.GetString()!, out long parsed)) set(c, parsed);
                else state.TypeError(key, value, "an integer or a size such as \"2GiB\", \"512MB\" or \"64M\"");
            }
            else if (state.ReadInteger(value, key, 0, long.MaxValue, out long v))
                set(c, v);
        }) { Value = c => get(c) is long v ? JsonValue.Create(v) : null, Ranges = Check(key, range, c => get(c)) };

    /// <summary>An enum chosen by name, case-insensitively. Numbers are refused: "1" says nothing to a reader.</summary>
    public static Field Choice<T>(string key, Func<TrainingConfig, T> get, Action<TrainingConfig, T> set, string meaning)
        where T : struct, Enum
    {
        string[] names = Enum.GetNames<T>();
        return new(key, string.Join(" | ", names.Select(n => $"\"{n}\"")), c => ConfigText.Show(get(c).ToString()), meaning,
            (state, value, c) =>
            {
                if (state.ReadChoice(value, key, names) is string match) set(c, Enum.Parse<T>(match));
            }) { Value = c => JsonValue.Create(get(c).ToString()), AcceptsAuto = false };
    }

    /// <summary>Adam's two betas, each with its own range (reported as betas[0] / betas[1]).</summary>
    public static Field Betas(string key, Bounds range) =>
        new(key, "[number, number]", c => $"[{ConfigText.Show(c.Optimizer.Beta1)}, {ConfigText.Show(c.Optimizer.Beta2)}]",
            "Adam beta1 and beta2.",
            (state, element, c) =>
            {
                if (state.ReadBetas(element, key, out double beta1, out double beta2))
                    (c.Optimizer.Beta1, c.Optimizer.Beta2) = (beta1, beta2);
            })
        {
            Value = c => new JsonArray(JsonValue.Create(c.Optimizer.Beta1), JsonValue.Create(c.Optimizer.Beta2)),
            Ranges = [new($"{key}[0]", range, c => c.Optimizer.Beta1), new($"{key}[1]", range, c => c.Optimizer.Beta2)],
        };

    /// <summary>
    /// A key read into the parse state rather than the configuration (DeepSpeed switches resolved once every key is in,
    /// aliases): not stored, so not in <see cref="ConfigLoader.ToJson"/>.
    /// </summary>
    public static Field Transient(string key, string type, string shownDefault, string meaning,
        Action<ConfigParseState, JsonElement> apply) =>
        new(key, type, _ => shownDefault, meaning, (state, value, _) => apply(state, value));
}
