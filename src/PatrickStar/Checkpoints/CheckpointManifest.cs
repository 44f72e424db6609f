using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Checkpoints;

/// <summary>
/// A checkpoint's manifest.json, parsed and checked:
/// <c>{"format": "patrickstar-checkpoint", "version": 2, "step": N, "model": {vocab_size, context_length, layers, hidden, heads},
/// "files": [...], "state": "trainer-state.json", "file_checks": [{"name", "bytes", "sha256"}, ...]}</c>.
/// Every file a load reads (the tensor files and the state) must have a check; <see cref="Verify"/> compares them.
/// Version 1 (before the state was hashed) is still read; its state file has no check.
/// </summary>
public sealed class CheckpointManifest
{
    public const int WrittenVersion = 2;
    private const int FirstVersion = 1;

    public string Path { get; }
    public string Directory { get; }
    public int Version { get; }
    /// <summary>The step the checkpoint was saved at; null in manifests that do not record it.</summary>
    public long? Step { get; }
    public CheckpointModelSizes Model { get; }
    public IReadOnlyList<string> Files { get; }
    /// <summary>The trainer state's file name; null in a weights-only checkpoint.</summary>
    public string? StateName { get; }
    private readonly Dictionary<string, (long Bytes, string Sha256)> checks;

    private CheckpointManifest(string path, int version, long? step, CheckpointModelSizes model, List<string> files, string? stateName,
        Dictionary<string, (long, string)> checks)
    {
        Path = path;
        Directory = System.IO.Path.GetDirectoryName(path)!;
        Version = version;
        Step = step;
        Model = model;
        Files = files;
        StateName = stateName;
        this.checks = checks;
    }

    /// <summary>Reads and checks the manifest of checkpoint directory <paramref name="dir"/> (no file is hashed yet).</summary>
    public static CheckpointManifest Read(string dir)
    {
        string path = System.IO.Path.Combine(dir, CheckpointParameters.ManifestName);
        if (!File.Exists(path))
            throw new CheckpointException($"{path} is missing: '{dir}' is not a complete checkpoint. Resume from another checkpoint.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new CheckpointException($"checkpoint manifest '{path}' is not valid JSON ({e.Message}); the checkpoint is damaged: use an earlier one.", e); }
        using (doc)
        {
            var root = doc.RootElement;
            CheckpointException Bad(string key, string problem) =>
                new($"checkpoint manifest '{path}': \"{key}\" {problem}");
            if (root.ValueKind != JsonValueKind.Object) throw Bad("(root)", $"must be a JSON object, not {root.ValueKind}; the checkpoint is damaged: use an earlier one.");
            string? format = root.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
            if (format != CheckpointParameters.Format)
                throw Bad("format", $"is {(format is null ? "missing" : $"'{format}'")}; expected '{CheckpointParameters.Format}'. This is not a PatrickStar checkpoint.");
            if (!root.TryGetProperty("version", out var v) || !v.TryGetInt32(out int version))
                throw Bad("version", "is missing or not an integer.");
            if (version < FirstVersion || version > WrittenVersion)
                throw Bad("version", $"is {version}; this pstar reads versions {FirstVersion} to {WrittenVersion}. Use the pstar that wrote the checkpoint.");
            long? step = null;
            if (root.TryGetProperty("step", out var s))
            {
                if (!s.TryGetInt64(out long value) || value < 0) throw Bad("step", $"is {s.GetRawText()}; it must be an integer >= 0.");
                step = value;
            }
            if (!root.TryGetProperty("model", out var m) || m.ValueKind != JsonValueKind.Object) throw Bad("model", "is missing or not an object.");
            int Size(string key)
            {
                if (!m.TryGetProperty(key, out var el) || !el.TryGetInt32(out int value) || value < 1)
                    throw Bad($"model.{key}", "is missing or not a positive integer.");
                return value;
            }
            var sizes = new CheckpointModelSizes(Size("vocab_size"), Size("context_length"), Size("layers"), Size("hidden"), Size("heads"));
            if (!root.TryGetProperty("files", out var fl) || fl.ValueKind != JsonValueKind.Array || fl.GetArrayLength() == 0)
                throw Bad("files", "is missing or empty; it must list the checkpoint's safetensors files.");
            var files = new List<string>();
            foreach (var el in fl.EnumerateArray())
            {
                string name = FileName(el, "files", Bad);
                if (files.Contains(name)) throw Bad("files", $"lists '{name}' twice.");
                files.Add(name);
            }
            string? state = root.TryGetProperty("state", out var st) ? FileName(st, "state", Bad) : null;
            var checks = ReadChecks(root, Bad);
            foreach (string name in files.Concat(version >= 2 && state is not null ? [state] : []))
                if (!checks.ContainsKey(name))
                    throw Bad("file_checks", $"has no size and SHA-256 for '{name}', so it cannot be verified; the checkpoint is damaged: use an earlier one.");
            return new CheckpointManifest(path, version, step, sizes, files, state, checks);
        }
    }

    private static string FileName(JsonElement el, string key, Func<string, string, CheckpointException> bad)
    {
        string? name = el.ValueKind == JsonValueKind.String ? el.GetString() : null;
        // Names stay inside the checkpoint directory: no absolute paths, no "..".
        if (string.IsNullOrEmpty(name) || System.IO.Path.IsPathRooted(name) || name.Split('/', '\\').Contains(".."))
            throw bad(key, $"holds {el.GetRawText()}; entries must be file names relative to the checkpoint directory.");
        return name;
    }

    private static Dictionary<string, (long, string)> ReadChecks(JsonElement root, Func<string, string, CheckpointException> bad)
    {
        var checks = new Dictionary<string, (long, string)>(StringComparer.Ordinal);
        if (!root.TryGetProperty("file_checks", out var list)) return checks;
        if (list.ValueKind != JsonValueKind.Array) throw bad("file_checks", "must be a list of {name, bytes, sha256}.");
        foreach (var c in list.EnumerateArray())
        {
            if (c.ValueKind != JsonValueKind.Object || !c.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String
                || !c.TryGetProperty("bytes", out var b) || !b.TryGetInt64(out long bytes) || bytes < 0
                || !c.TryGetProperty("sha256", out var h) || h.ValueKind != JsonValueKind.String)
                throw bad("file_checks", $"holds {c.GetRawText()}; each entry must be {{\"name\": string, \"bytes\": integer >= 0, \"sha256\": string}}.");
            checks[n.GetString()!] = (bytes, h.GetString()!);
        }
        return checks;
    }

    /// <summary>Checks that every file with a check exists with its recorded size and SHA-256; names the first that differs.</summary>
    public void Verify()
    {
        foreach (string name in Files.Concat(StateName is null ? [] : [StateName]))
        {
            if (!checks.TryGetValue(name, out var check)) continue; // only a version-1 state file lacks one
            string full = System.IO.Path.Combine(Directory, name);
            if (!File.Exists(full))
                throw new CheckpointException($"{full} is missing: the checkpoint lists it in {Path}. Use an earlier checkpoint.");
            long actual = new FileInfo(full).Length;
            if (actual != check.Bytes)
                throw new CheckpointException($"{full} has {actual:N0} bytes but the manifest says {check.Bytes:N0}: the file is truncated or was replaced. Use an earlier checkpoint.");
            string hash = Sha256(full);
            if (hash != check.Sha256)
                throw new CheckpointException($"{full} is corrupted: its SHA-256 {hash} differs from the manifest's {check.Sha256}. Use an earlier checkpoint.");
        }
    }

    /// <summary>The manifest of a checkpoint whose files (tensor files and state) are complete in <paramref name="dir"/>.</summary>
    public static string Json(long step, CheckpointModelSizes model, string dir, IReadOnlyList<string> files, string stateName)
    {
        var fileChecks = new JsonArray();
        foreach (var f in files.Append(stateName))
        {
            string full = System.IO.Path.Combine(dir, f);
            fileChecks.Add(new JsonObject { ["name"] = f, ["bytes"] = new FileInfo(full).Length, ["sha256"] = Sha256(full) });
        }
        var manifest = new JsonObject
        {
            ["format"] = CheckpointParameters.Format,
            ["version"] = WrittenVersion,
            ["step"] = step,
            ["model"] = new JsonObject
            {
                ["vocab_size"] = model.VocabSize, ["context_length"] = model.ContextLength, ["layers"] = model.Layers,
                ["hidden"] = model.Hidden, ["heads"] = model.Heads,
            },
            ["files"] = new JsonArray(files.Select(f => (JsonNode)JsonValue.Create(f)!).ToArray()),
            ["file_checks"] = fileChecks,
            ["state"] = stateName,
        };
        return manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
