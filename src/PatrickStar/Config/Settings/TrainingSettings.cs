using System.Text.Json.Serialization;

namespace PatrickStar.Config;

// The optimizer, schedule and precision sections of DeepSpeedSettings, with DeepSpeed's key names (and ours where
// DeepSpeed has none). DeepSpeed-only spellings (warmup_num_steps, adam_w_mode, warmup_max_lr) are read, never written:
// the resolved config writes our one name per setting.

/// <summary>"optimizer".</summary>
public sealed record OptimizerSettings
{
    /// <summary>"AdamW" or "Adam" (case-insensitive in a file).</summary>
    [JsonPropertyName("type")] public string? Type { get; init; }
    [JsonPropertyName("params")] public OptimizerParams Params { get; init; } = new();
}

/// <summary>optimizer.params.</summary>
public sealed record OptimizerParams
{
    [JsonPropertyName("lr")] public double? Lr { get; init; }
    [JsonPropertyName("betas")] public double[]? Betas { get; init; }
    [JsonPropertyName("eps")] public double? Eps { get; init; }
    [JsonPropertyName("weight_decay")] public double? WeightDecay { get; init; }
    [JsonPropertyName("no_decay_bias_and_norm")] public bool? NoDecayBiasAndNorm { get; init; }
    [JsonPropertyName("adam_w_mode")] public bool? AdamWMode { get; init; }
}

/// <summary>"scheduler".</summary>
public sealed record SchedulerSettings
{
    [JsonPropertyName("type")] public string? Type { get; init; }
    [JsonPropertyName("params")] public SchedulerParams Params { get; init; } = new();
}

/// <summary>scheduler.params: ours (WarmupCosine, WarmupLinear) and DeepSpeed's (WarmupLR, WarmupDecayLR, WarmupCosineLR).</summary>
public sealed record SchedulerParams
{
    [JsonPropertyName("warmup_steps")] public int? WarmupSteps { get; init; }
    [JsonPropertyName("warmup_num_steps")] public int? WarmupNumSteps { get; init; }
    [JsonPropertyName("total_steps"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public int? TotalSteps { get; init; }
    [JsonPropertyName("total_num_steps")] public int? TotalNumSteps { get; init; }
    [JsonPropertyName("min_lr_ratio")] public double? MinLrRatio { get; init; }
    [JsonPropertyName("min_lr")] public double? MinLr { get; init; }
    [JsonPropertyName("warmup_min_lr")] public double? WarmupMinLr { get; init; }
    [JsonPropertyName("warmup_max_lr")] public double? WarmupMaxLr { get; init; }
    [JsonPropertyName("warmup_type")] public string? WarmupType { get; init; }
    [JsonPropertyName("warmup_min_ratio")] public double? WarmupMinRatio { get; init; }
    [JsonPropertyName("cos_min_ratio")] public double? CosMinRatio { get; init; }
}

/// <summary>"bf16".</summary>
public sealed record Bf16Settings
{
    [JsonPropertyName("enabled")] public bool? Enabled { get; init; }
    /// <summary>Ours: bf16 parameters, fp32 activations and matmuls.</summary>
    [JsonPropertyName("fp32_compute")] public bool? Fp32Compute { get; init; }
}

/// <summary>"fp16": the precision switch and loss scaling.</summary>
public sealed record Fp16Settings
{
    [JsonPropertyName("enabled")] public bool? Enabled { get; init; }
    [JsonPropertyName("loss_scale")] public double? LossScale { get; init; }
    [JsonPropertyName("initial_scale_power")] public int? InitialScalePower { get; init; }
    [JsonPropertyName("loss_scale_window")] public int? LossScaleWindow { get; init; }
    [JsonPropertyName("hysteresis")] public int? Hysteresis { get; init; }
    [JsonPropertyName("min_loss_scale")] public double? MinLossScale { get; init; }
}
