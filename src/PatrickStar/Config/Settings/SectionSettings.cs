using System.Text.Json.Serialization;

namespace PatrickStar.Config;

// The sections of DeepSpeedSettings other than the optimizer, the schedule and the precision. Every value is nullable:
// absent (or DeepSpeed's "auto") keeps the default; sections are not (null is refused, as by the key table). Keys whose value may be null are written even when null
// (JsonIgnoreCondition.Never), as the key table writes them, so that recorded configs compare equal (RunIdentity).

/// <summary>"model": a preset and the sizes that override it.</summary>
public sealed record ModelSettings
{
    [JsonPropertyName("preset"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? Preset { get; init; }
    [JsonPropertyName("vocab_size"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? VocabSize { get; init; }
    [JsonPropertyName("n_positions"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? NPositions { get; init; }
    [JsonPropertyName("n_layer"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? NLayer { get; init; }
    [JsonPropertyName("n_embd"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? NEmbd { get; init; }
    [JsonPropertyName("n_head"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? NHead { get; init; }
    [JsonPropertyName("dropout"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public double? Dropout { get; init; }
    // A LLaMA's shape: written only when set (older checkpoints' configs lack them).
    [JsonPropertyName("family")] public string? Family { get; init; }
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; init; }
    [JsonPropertyName("intermediate_size")] public int? IntermediateSize { get; init; }
    [JsonPropertyName("rope_theta")] public double? RopeTheta { get; init; }
    [JsonPropertyName("rms_norm_eps")] public double? RmsNormEps { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool? TieWordEmbeddings { get; init; }
    [JsonPropertyName("rope_scaling")] public RopeScalingSettings? RopeScaling { get; init; }
}

/// <summary>"model.rope_scaling": Llama-3 rotary frequency scaling.</summary>
public sealed record RopeScalingSettings
{
    [JsonPropertyName("factor")] public double? Factor { get; init; }
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }
}

/// <summary>"data": the training text and its tokenizer.</summary>
public sealed record DataSettings
{
    [JsonPropertyName("files")] public List<string>? Files { get; init; }
    [JsonPropertyName("validation_fraction")] public double? ValidationFraction { get; init; }
    [JsonPropertyName("tokenizer"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? Tokenizer { get; init; }
    [JsonPropertyName("text_field")] public string? TextField { get; init; }
    [JsonPropertyName("bin_dtype")] public string? BinDType { get; init; }
    [JsonPropertyName("cache_dir"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? CacheDir { get; init; }
}

/// <summary>"eval".</summary>
public sealed record EvalSettings
{
    [JsonPropertyName("interval")] public int? Interval { get; init; }
    [JsonPropertyName("batches")] public int? Batches { get; init; }
}

/// <summary>"checkpoint": periodic training checkpoints.</summary>
public sealed record CheckpointSettings
{
    [JsonPropertyName("save_dir"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? SaveDir { get; init; }
    [JsonPropertyName("save_every")] public int? SaveEvery { get; init; }
    [JsonPropertyName("keep_last")] public int? KeepLast { get; init; }
    [JsonPropertyName("auto_resume")] public bool? AutoResume { get; init; }
}

/// <summary>"mem_tracer": the chunk engine's warm-up trace.</summary>
public sealed record MemTracerSettings
{
    [JsonPropertyName("warmup_device_ratio")] public double? WarmupDeviceRatio { get; init; }
    [JsonPropertyName("margin_use_ratio")] public double? MarginUseRatio { get; init; }
}

/// <summary>"distributed".</summary>
public sealed record DistributedSettings
{
    [JsonPropertyName("mode")] public string? Mode { get; init; }
}

/// <summary>
/// DeepSpeed's "zero_optimization": the stage and offload devices, which select the chunk engine. Its tuning knobs
/// (DeepSpeedKeys.Ignored) have no effect here and are not part of the record.
/// </summary>
public sealed record ZeroSettings
{
    [JsonPropertyName("stage")] public int? Stage { get; init; }
    [JsonPropertyName("offload_param")] public OffloadSettings OffloadParam { get; init; } = new();
    [JsonPropertyName("offload_optimizer")] public OffloadSettings OffloadOptimizer { get; init; } = new();
}

/// <summary>zero_optimization.offload_param / offload_optimizer.</summary>
public sealed record OffloadSettings
{
    /// <summary>"none", "cpu" or "nvme".</summary>
    [JsonPropertyName("device")] public string? Device { get; init; }
}
