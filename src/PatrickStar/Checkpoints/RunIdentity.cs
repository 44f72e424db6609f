using System.Text.Json.Nodes;
using PatrickStar.Config;

namespace PatrickStar.Checkpoints;

/// <summary>
/// Whether a checkpoint belongs to the run a config describes: the same config, up to the keys that may change
/// between the invocations of one run without changing what it trains (how long, where it saves, on what engine,
/// device and memory). Every other key, and any key added later, counts: a difference refuses rather than mixes.
/// </summary>
public static class RunIdentity
{
    private static readonly string[] Ignored =
    [
        "steps", "scheduler.params.total_steps", "checkpoint.", "eval.", "engine", "device", "threads", "activation_checkpointing",
        "chunk_size", "placement_policy", "device_memory", "host_memory", "disk_dir", "disk_memory", "disk_read_ahead", "mem_tracer.", "use_hybrid_adam", "prefetch", "distributed.",
    ];

    /// <summary>The keys whose values differ, as "key: saved -> now" (empty when the checkpoint is of this run).</summary>
    public static List<string> Differences(TrainingConfig now, string savedConfigJson)
    {
        var current = Flatten(JsonNode.Parse(ConfigLoader.ToJson(now)));
        Dictionary<string, string> saved;
        try { saved = Flatten(JsonNode.Parse(savedConfigJson)); }
        catch (System.Text.Json.JsonException) { return ["config: unreadable"]; }
        return current.Keys.Union(saved.Keys)
            .Where(k => !Ignored.Any(i => i.EndsWith('.') ? k.StartsWith(i, StringComparison.Ordinal) : k == i))
            .Where(k => current.GetValueOrDefault(k) != saved.GetValueOrDefault(k))
            .Order(StringComparer.Ordinal)
            .Select(k => $"{k}: {saved.GetValueOrDefault(k) ?? "(absent)"} -> {current.GetValueOrDefault(k) ?? "(absent)"}")
            .ToList();
    }

    /// <summary>Whether the checkpoint in <paramref name="checkpointDir"/> was saved by a run with this config.</summary>
    public static bool Matches(TrainingConfig now, string checkpointDir) =>
        TrainerStateFile.TryReadConfig(checkpointDir) is string saved && Differences(now, saved).Count == 0;

    /// <summary>A config document as "dotted.key" -> value JSON text (arrays are values): the form configs are compared in.</summary>
    public static Dictionary<string, string> Flatten(JsonNode? node)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        void Walk(JsonNode? n, string prefix)
        {
            if (n is JsonObject o)
                foreach (var (k, v) in o) Walk(v, prefix.Length == 0 ? k : $"{prefix}.{k}");
            else
                result[prefix] = n?.ToJsonString() ?? "null";
        }
        Walk(node, "");
        return result;
    }
}
