using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>
/// Reads a <see cref="TrainingConfig"/> from a DeepSpeed / PatrickStar style JSON file or from command-line overrides,
/// and checks its values.
/// </summary>
/// <remarks>
/// <para>
/// Parsing is strict: every key must be known, every value must have the right JSON type, a key may appear once, and
/// all problems are reported together in one <see cref="ConfigException"/>. Known DeepSpeed keys without a counterpart
/// here warn once each instead (see <see cref="DeepSpeedKeys"/>). Keys that are absent keep the defaults of
/// <see cref="TrainingConfig"/>; "auto" (DeepSpeed's "let the integration choose") keeps them too. Comments and trailing
/// commas are tolerated so that example configurations can be annotated.
/// </para>
/// <para>
/// The walk over the document is ours rather than System.Text.Json's deserializer, which stops at the first problem
/// and cannot say "did you mean"; the per-key work is the table in <see cref="ConfigKeys"/>. <see cref="Parse"/> only
/// checks shapes; ranges (declared once, in that table) are checked by <see cref="Validate"/>, because command-line
/// overrides are applied between the two. Once the walk accepts a text, <see cref="SettingsCheck"/> reads it again,
/// strictly, into the typed <see cref="DeepSpeedSettings"/>.
/// </para>
/// </remarks>
public static partial class ConfigLoader
{
    /// <summary>The engines accepted by the <c>engine</c> key.</summary>
    public static readonly string[] Engines = ConfigKeys.Engines;

    // Comments and trailing commas are harmless in a hand-written config; everything else stays standard JSON.
    private static readonly JsonDocumentOptions DocumentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    private static readonly Dictionary<string, Field> FieldsByKey = ConfigKeys.All.ToDictionary(f => f.Key, StringComparer.Ordinal);

    // Every object level ("" is the top level) mapped to the names allowed directly inside it, in table order
    // (DeepSpeed's ignored keys last). Sections are not declared separately: they are the prefixes of the keys.
    private static readonly Dictionary<string, List<string>> ChildrenByPath = BuildChildren();

    /// <summary>
    /// Every configuration key with its JSON type (and range), its default and what it means; the source for printed
    /// and documented references.
    /// </summary>
    public static IReadOnlyList<(string Key, string Type, string Default, string Meaning)> Reference { get; } =
        ConfigKeys.All.Select(f => (f.Key, f.TypeAndRange, f.Default(new TrainingConfig()), f.Meaning)).ToArray();

    /// <summary>Known DeepSpeed keys that are accepted with a warning, and why they have no effect.</summary>
    public static IReadOnlyDictionary<string, string> IgnoredDeepSpeedKeys => DeepSpeedKeys.Ignored;

    /// <summary>
    /// The whole configuration as a JSON document in the file format (every stored key, nested by section), so
    /// that <see cref="Parse"/> gives the same configuration back; checkpoints keep it. Written from
    /// <see cref="DeepSpeedSettings"/> by the source-generated context.
    /// </summary>
    public static string ToJson(TrainingConfig c) => DeepSpeedSettings.From(c).ToJson();

    /// <summary>A key's current value as JSON text, or null for a key that is not stored (an alias, a DeepSpeed switch).</summary>
    public static string? ValueOf(TrainingConfig c, string key) =>
        FieldsByKey.TryGetValue(key, out Field? field)
            ? field.Value is null ? null : field.Value(c)?.ToJsonString() ?? "null"
            : throw new ArgumentException($"{key} is not a configuration key.", nameof(key));

    /// <summary>
    /// Reads and parses a JSON configuration file. Values are not range-checked; call <see cref="Validate"/>
    /// after applying any overrides.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="warnings">Receives one line per known key that is accepted but not acted on (DeepSpeed's tuning knobs).</param>
    /// <exception cref="ConfigException">The file is missing or unreadable, is not valid JSON, or has unknown
    /// keys or values of the wrong type.</exception>
    public static TrainingConfig Load(string path, ICollection<string>? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(path);

        string fullPath;
        try
        {
            fullPath = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ConfigException($"Configuration path '{path}' is not a valid path: {ex.Message}", ex);
        }

        // Name the path as given, plus where it resolved to when that differs, so relative paths are debuggable.
        string shown = fullPath == path ? $"'{path}'" : $"'{path}' (resolved to '{fullPath}')";
        if (Directory.Exists(fullPath))
            throw new ConfigException($"Configuration file {shown} is a directory; pass the path of a JSON file.");
        if (!File.Exists(fullPath))
            throw new ConfigException($"Configuration file {shown} does not exist; check the path or create the file.");

        string text;
        try
        {
            text = File.ReadAllText(fullPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            throw new ConfigException(
                $"Configuration file {shown} cannot be read: {ex.Message} Check that it exists and is readable.", ex);
        }

        return Parse(text, path, warnings);
    }

    /// <summary>
    /// Parses JSON text into a configuration, starting from the defaults of <see cref="TrainingConfig"/> and
    /// applying every key present. Values are not range-checked; see <see cref="Validate"/>.
    /// </summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">Where the text came from (a file path), used in error messages.</param>
    /// <param name="warnings">Receives one line per known key that is accepted but not acted on.</param>
    /// <exception cref="ConfigException">Invalid JSON, unknown keys, wrong value types or repeated keys.</exception>
    public static TrainingConfig Parse(string json, string sourceName, ICollection<string>? warnings = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);

        // The parser's own message for this case talks about "isFinalBlock", which helps nobody.
        if (string.IsNullOrWhiteSpace(json))
            throw new ConfigException($"{sourceName}: the file is empty; write a JSON object such as {{ \"steps\": 300 }}, or {{}} for the defaults.");

        var config = new TrainingConfig();
        Apply(json, sourceName, config, warnings);
        return config;
    }

    /// <summary>Applies a JSON object's keys onto a configuration; the one path of files, flags and --set.</summary>
    private static void Apply(string json, string sourceName, TrainingConfig config, ICollection<string>? warnings)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException ex)
        {
            throw new ConfigException($"{sourceName}: invalid JSON at {DescribePosition(ex)}: {ParserMessage(ex)} "
                + "Fix the syntax there (a missing comma, quote or bracket is the usual cause).", ex);
        }

        using (document)
        {
            var state = new ConfigParseState();
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException(
                    $"{sourceName}: the top level is {ConfigText.Written(root)}, but it must be a JSON object such as {{ \"steps\": 300 }}.");
            }

            ApplyObject(state, root, "", config);
            PrecisionKeys.ResolveFp32Compute(state, config);
            DeepSpeedKeys.Resolve(state, config);

            if (state.Errors.Count > 0)
                throw new ConfigException(ConfigText.FormatErrors(sourceName, state.Errors));
            SettingsCheck.Verify(root, sourceName);
            foreach (string warning in state.Warnings.Values)
                warnings?.Add($"{sourceName}: {warning}");
        }
    }

    /// <summary>
    /// Range-checks a configuration (after the file and any command-line overrides are applied). All problems
    /// are collected and reported together.
    /// </summary>
    /// <param name="c">The configuration to check.</param>
    /// <param name="sourceName">Where the values came from, used in the error message.</param>
    /// <param name="ranks">The data-parallel ranks, when known: then a given train_batch_size must equal micro batch x
    /// accumulation x ranks. Null skips that check (a library caller that does not know them).</param>
    /// <exception cref="ConfigException">One or more values are out of range; the message lists them all,
    /// one per line, by their JSON key.</exception>
    public static void Validate(TrainingConfig c, string sourceName = "configuration", int? ranks = null)
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(sourceName);

        var errors = new List<string>();
        void Require(bool ok, string key, object? value, string allowed)
        {
            if (!ok)
                errors.Add($"{key} is {ConfigText.Show(value)}, but it must be {allowed}.");
        }

        foreach (RangeCheck check in ConfigKeys.All.SelectMany(f => f.Ranges))
            if (check.Get(c) is double value && !check.Range.Contains(value))
                errors.Add($"{check.Key} is {ConfigText.Show(value)}, but it must be "
                    + $"{(double.IsFinite(value) ? "" : "a finite number ")}{check.Range.Text}{check.Range.Note}.");

        // What a range cannot say: text, relations between keys, and limits of this machine.
        var model = c.Model;
        Require(model.Preset is null || model.Preset.Trim().Length > 0, "model.preset", model.Preset,
            "a preset name, or null when all sizes are given");
        if (model.Hidden is int hidden and >= 1 && model.Heads is int heads and >= 1 && hidden % heads != 0)
        {
            int lower = hidden / heads * heads;
            string nearest = lower >= heads ? $"{lower} or {lower + heads}" : $"{heads}";
            errors.Add($"model.n_embd is {hidden} and model.n_head is {heads}, but n_embd must be divisible by n_head "
                + $"(e.g. n_embd {nearest}).");
        }

        var files = c.Data.Files ?? [];
        for (int i = 0; i < files.Count; i++)
            Require(!string.IsNullOrWhiteSpace(files[i]), $"data.files[{i}]", files[i], "a non-empty file path");
        Require(c.Data.BinDType is "uint16" or "uint32", "data.bin_dtype", c.Data.BinDType, "uint16 or uint32");
        Require(!string.IsNullOrWhiteSpace(c.Data.TextField), "data.text_field", c.Data.TextField, "a non-empty field name");
        if (c.SequenceLength >= 1 && model.ContextLength is int positions and >= 1 && c.SequenceLength > positions)
        {
            errors.Add($"seq_len is {c.SequenceLength}, but it must be <= model.n_positions, which is {positions}; "
                + "lower seq_len or raise model.n_positions.");
        }

        if (ranks is int r && c.TrainBatchSize is int declared && c.MicroBatchSize >= 1 && c.GradientAccumulationSteps >= 1)
        {
            long product = (long)c.MicroBatchSize * c.GradientAccumulationSteps * r;
            if (declared != product)
                errors.Add($"train_batch_size is {declared}, but train_micro_batch_size_per_gpu ({c.MicroBatchSize}) * "
                    + $"gradient_accumulation_steps ({c.GradientAccumulationSteps}) * ranks ({r}) = {product}; "
                    + $"set train_batch_size to {product}, to \"auto\", or remove it.");
        }

        if (c.Scheduler.MinLr is double minLr && minLr >= c.Optimizer.LearningRate)
            errors.Add($"scheduler.params.min_lr is {ConfigText.Show(minLr)}, but it must be below the peak rate optimizer.params.lr, "
                + $"which is {ConfigText.Show(c.Optimizer.LearningRate)}; lower min_lr or raise lr.");

        Require(c.Engine is not null && Engines.Contains(c.Engine, StringComparer.Ordinal), "engine", c.Engine,
            "one of " + string.Join(", ", Engines.Select(e => $"\"{e}\"")));
        Require(IsValidDevice(c.Device), "device", c.Device,
            "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\" with N a device index such as \"cuda:0\"");
        // More threads than cores only slows torch down, and a huge count starts thousands of threads that starve the machine.
        Require(c.Threads <= Environment.ProcessorCount, "threads", c.Threads,
            $"between 0 and the {Environment.ProcessorCount} cores of this machine (0 keeps torch's default: one per core)");
        Require(c.Checkpoint.SaveDir is null || c.Checkpoint.SaveDir.Trim().Length > 0, "checkpoint.save_dir", c.Checkpoint.SaveDir, "a directory path, or null");

        if (errors.Count > 0)
            throw new ConfigException(ConfigText.FormatErrors(sourceName, errors));
    }

    // ---- Parsing ------------------------------------------------------------------------------------------

    private static void ApplyObject(ConfigParseState state, JsonElement obj, string path, TrainingConfig config)
    {
        // JsonDocument keeps repeated names; with "last one wins" a stale value could silently survive an edit.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in obj.EnumerateObject())
        {
            string key = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
            JsonElement value = property.Value;
            if (!seen.Add(property.Name))
            {
                state.Error(key, $"{key} appears more than once; keep only one.");
                continue;
            }

            state.Present.Add(key);
            if (FieldsByKey.TryGetValue(key, out Field? field))
            {
                // DeepSpeed's "auto": the integration chooses, which here means our default (train_batch_size: derived).
                if (!(field.AcceptsAuto && value.ValueKind == JsonValueKind.String && value.GetString() == "auto"))
                    field.Apply(state, value, config);
            }
            else if (DeepSpeedKeys.Ignored.TryGetValue(key, out string? why))
            {
                // false switches the feature off, which is what happens here anyway: nothing to warn about.
                if (value.ValueKind != JsonValueKind.False) state.Warn(key, $"{key} {why}.");
            }
            else if (ChildrenByPath.ContainsKey(key))
            {
                if (value.ValueKind == JsonValueKind.Object)
                    ApplyObject(state, value, key, config);
                else if (value.ValueKind == JsonValueKind.Null)
                    state.Error(key, $"{key} is null, but it must be an object; remove the key to keep the defaults.");
                else
                    state.TypeError(key, value, "an object");
            }
            else
            {
                state.Error(key, UnknownKeyMessage(path, property.Name, key));
            }
        }
    }

    private static string UnknownKeyMessage(string path, string name, string key)
    {
        List<string> allowed = ChildrenByPath.GetValueOrDefault(path) ?? [];
        var message = new StringBuilder($"{key} is not a known key");

        // A near miss at the same level is most likely a typo.
        string? closest = allowed
            .Select(candidate => (candidate, distance: ConfigText.EditDistance(name.ToLowerInvariant(), candidate.ToLowerInvariant())))
            .Where(x => x.distance <= 2)
            .OrderBy(x => x.distance)
            .Select(x => x.candidate)
            .FirstOrDefault();
        if (closest is not null)
            message.Append($"; did you mean '{closest}'?");
        else
            message.Append('.');

        // An exact name from another level (e.g. "lr" at the top) is most likely misplaced.
        var elsewhere = ConfigKeys.All.Select(f => f.Key).Concat(ChildrenByPath.Keys)
            .Where(known => known.Length > 0 && known != key && ConfigText.LastSegment(known).Equals(name, StringComparison.OrdinalIgnoreCase))
            .Distinct()
            .ToList();
        if (elsewhere.Count > 0)
            message.Append($" It belongs at {string.Join(" or ", elsewhere.Select(k => $"'{k}'"))}.");

        string level = path.Length == 0 ? "top-level keys" : $"keys in '{path}'";
        if (allowed.Count > 0)
            message.Append($" Allowed {level}: {string.Join(", ", allowed)}.");
        return message.ToString();
    }

    private static Dictionary<string, List<string>> BuildChildren()
    {
        var children = new Dictionary<string, List<string>>(StringComparer.Ordinal) { [""] = new() };
        foreach (string key in ConfigKeys.All.Select(f => f.Key).Concat(DeepSpeedKeys.Ignored.Keys))
        {
            string[] parts = key.Split('.');
            string parent = "";
            foreach (string part in parts)
            {
                List<string> siblings = children[parent];
                if (!siblings.Contains(part))
                    siblings.Add(part);
                parent = parent.Length == 0 ? part : $"{parent}.{part}";
                if (parent != key && !children.ContainsKey(parent))
                    children[parent] = new List<string>();
            }
        }

        return children;
    }

    private static string DescribePosition(JsonException ex) =>
        ex.LineNumber is long line
            ? $"line {line + 1}, position {(ex.BytePositionInLine ?? 0) + 1}" // the parser counts from 0
            : "an unknown position";

    // The parser appends its own zero-based "LineNumber: 2 | BytePositionInLine: 4." which would contradict the
    // one-based position already given, so cut it off.
    private static string ParserMessage(JsonException ex)
    {
        string message = ex.Message;
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0)
            cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        message = (cut >= 0 ? message[..cut] : message).Trim();
        return message.EndsWith('.') ? message : message + ".";
    }

    private static bool IsValidDevice(string? device) =>
        device is "auto" or "cpu" or "cuda"
        || (device is not null && device.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(device.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out _));
}
