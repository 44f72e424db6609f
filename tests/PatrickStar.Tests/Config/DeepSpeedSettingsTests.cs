using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>
/// DeepSpeedSettings and its source-generated context: the resolved config is written through them and reads back to the
/// same configuration; their JSON is the key table's (so checkpoints recorded before still match); reading is strict.
/// </summary>
public sealed class DeepSpeedSettingsTests
{
    private const string Source = "settings.json";

    /// <summary>Keys the key table leaves out of the recorded config while they have their default.</summary>
    private static readonly string[] OmittedAtDefault =
    [
        "train_batch_size", "steps_per_print", "scheduler.params.min_lr", "scheduler.params.warmup_min_lr",
        "scheduler.params.warmup_type", "scheduler.params.warmup_min_ratio", "scheduler.params.cos_min_ratio",
        "model.family", "model.num_key_value_heads", "model.intermediate_size", "model.rope_theta", "model.rms_norm_eps",
        "model.tie_word_embeddings", "model.rope_scaling.factor", "model.rope_scaling.low_freq_factor",
        "model.rope_scaling.high_freq_factor", "model.rope_scaling.original_max_position_embeddings",
    ];

    public static TheoryData<string> Configs => new() { "", "ds_zero3_offload.json", "ds_bf16_warmupcosine.json" };

    private static TrainingConfig Load(string example) =>
        example.Length == 0 ? new TrainingConfig() : ConfigLoader.Load(DeepSpeedConfigTests.Example(example));

    /// <summary>Equal configurations: every stored key of the table has the same value.</summary>
    internal static void AssertSameConfig(TrainingConfig expected, TrainingConfig actual, string what)
    {
        foreach (var (key, _, _, _) in ConfigLoader.Reference)
            Assert.True(ConfigLoader.ValueOf(expected, key) == ConfigLoader.ValueOf(actual, key),
                $"{what}: {key} is {ConfigLoader.ValueOf(actual, key)}, expected {ConfigLoader.ValueOf(expected, key)}");
    }

    [Theory]
    [MemberData(nameof(Configs))]
    public void ParseToSettingsToJsonAndBack_GivesTheSameConfig(string example)
    {
        TrainingConfig c = Load(example);
        string json = DeepSpeedSettings.From(c).ToJson();

        AssertSameConfig(c, ConfigLoader.Parse(json, Source), example);
        Assert.Equal(json, DeepSpeedSettings.FromJson(json).ToJson());
    }

    /// <summary>
    /// The settings' JSON holds exactly the key table's stored keys and values (what the previous, table-driven writer
    /// recorded in checkpoints), so that RunIdentity matches checkpoints saved before.
    /// </summary>
    [Theory]
    [MemberData(nameof(Configs))]
    public void RecordedJson_IsTheKeyTables(string example)
    {
        TrainingConfig c = Load(example);
        c.Scheduler.MinLr = 1e-5; // an omitted-at-default key with a value: written
        var flat = RunIdentity.Flatten(JsonNode.Parse(ConfigLoader.ToJson(c)));
        var defaults = new TrainingConfig();

        foreach (var (key, _, _, _) in ConfigLoader.Reference)
        {
            string? value = ConfigLoader.ValueOf(c, key);
            if (value is null) Assert.False(flat.ContainsKey(key), $"{key} is an alias or switch and is not recorded");
            else if (flat.TryGetValue(key, out string? written)) Assert.Equal((key, value), (key, written));
            else
            {
                Assert.Contains(key, OmittedAtDefault);
                Assert.Equal((key, ConfigLoader.ValueOf(defaults, key)), (key, value));
            }
        }
        Assert.All(flat.Keys, k => Assert.Contains(ConfigLoader.Reference, r => r.Key == k));
        Assert.Empty(RunIdentity.Differences(c, ConfigLoader.ToJson(c)));
    }

    [Theory]
    [InlineData("""{"stepz": 3}""")]
    [InlineData("""{"Steps": 3}""")]
    [InlineData("""{"steps": "3"}""")]
    [InlineData("""{"steps": 3.5}""")]
    [InlineData("""{"model": null}""")]
    [InlineData("""{"optimizer": {"params": null}}""")]
    [InlineData("""{"device_memory": "2XB"}""")]
    [InlineData("""{"zero_optimization": {"overlap_comm": true}}""")]
    public void FromJson_IsStrict(string json)
    {
        Assert.ThrowsAny<JsonException>(() => DeepSpeedSettings.FromJson(json));
    }

    [Fact]
    public void FromJson_TakesCommentsTrailingCommasWholeDoublesAndSizes()
    {
        var s = DeepSpeedSettings.FromJson("""
            { // a hand-written file
              "steps": 3.0, "device_memory": "2GiB", "chunk_size": 1000,
              "zero_optimization": { "stage": 3, "offload_param": { "device": "cpu" }, },
            }
            """);
        Assert.Equal(3, s.Steps);
        Assert.Equal(2L << 30, s.DeviceMemory);
        Assert.Equal(1000L, s.ChunkSize);
        Assert.Equal("cpu", s.ZeroOptimization?.OffloadParam.Device);
    }

    /// <summary>The strict second reading leaves out what the walk accepts and ignores: every known DeepSpeed knob loads.</summary>
    [Fact]
    public void EveryIgnoredDeepSpeedKey_PassesTheStrictSecondReading()
    {
        var root = new JsonObject();
        foreach (string key in ConfigLoader.IgnoredDeepSpeedKeys.Keys)
        {
            string[] parts = key.Split('.');
            JsonObject node = root;
            foreach (string part in parts[..^1])
            {
                if (node[part] is not JsonObject child) node[part] = child = new JsonObject();
                node = child;
            }
            node[parts[^1]] = true;
        }
        root["gradient_clipping"] = "auto";
        root["activation_checkpointing"] = new JsonObject { ["partition_activations"] = true };

        var warnings = new List<string>();
        ConfigLoader.Parse(root.ToJsonString(), Source, warnings);
        Assert.NotEmpty(warnings);
    }
}
