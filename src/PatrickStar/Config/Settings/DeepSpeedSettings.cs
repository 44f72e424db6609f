using System.Text.Json;
using System.Text.Json.Serialization;

namespace PatrickStar.Config;

/// <summary>
/// A configuration file as typed records, with DeepSpeed's key names (and ours where DeepSpeed has none), read and
/// written by the source-generated, strict <see cref="ConfigJsonContext"/>. The resolved config a checkpoint records is
/// this record, mapped from a <see cref="TrainingConfig"/> by <see cref="From"/>.
/// </summary>
/// <remarks>
/// Files are validated by <see cref="ConfigLoader"/>'s walk over the document, which reports every problem at once with
/// "did you mean"; the deserializer would stop at the first. After the walk accepts a text, the same text is read into
/// this record as a second, strict check (<see cref="SettingsCheck"/>): the two describe the same keys.
/// </remarks>
public sealed record DeepSpeedSettings
{
    [JsonPropertyName("model")] public ModelSettings Model { get; init; } = new();
    [JsonPropertyName("data")] public DataSettings Data { get; init; } = new();
    [JsonPropertyName("train_micro_batch_size_per_gpu")] public int? TrainMicroBatchSizePerGpu { get; init; }
    [JsonPropertyName("gradient_accumulation_steps")] public int? GradientAccumulationSteps { get; init; }
    [JsonPropertyName("train_batch_size")] public int? TrainBatchSize { get; init; }
    [JsonPropertyName("seq_len")] public int? SeqLen { get; init; }
    [JsonPropertyName("steps")] public int? Steps { get; init; }
    [JsonPropertyName("optimizer")] public OptimizerSettings Optimizer { get; init; } = new();
    [JsonPropertyName("scheduler")] public SchedulerSettings Scheduler { get; init; } = new();
    [JsonPropertyName("bf16")] public Bf16Settings Bf16 { get; init; } = new();
    [JsonPropertyName("fp16")] public Fp16Settings Fp16 { get; init; } = new();
    [JsonPropertyName("gradient_clipping")] public double? GradientClipping { get; init; }
    [JsonPropertyName("seed")] public long? Seed { get; init; }
    [JsonPropertyName("eval")] public EvalSettings Eval { get; init; } = new();
    [JsonPropertyName("steps_per_print")] public int? StepsPerPrint { get; init; }
    [JsonPropertyName("engine")] public string? Engine { get; init; }
    [JsonPropertyName("device")] public string? Device { get; init; }
    [JsonPropertyName("threads")] public int? Threads { get; init; }
    /// <summary>Ours is a switch; DeepSpeed's object of options is accepted with a warning by the walk and not kept.</summary>
    [JsonPropertyName("activation_checkpointing")] public bool? ActivationCheckpointing { get; init; }
    [JsonPropertyName("chunk_size"), JsonConverter(typeof(ByteSizeConverter)), JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public long? ChunkSize { get; init; }
    [JsonPropertyName("placement_policy")] public string? PlacementPolicy { get; init; }
    [JsonPropertyName("device_memory"), JsonConverter(typeof(ByteSizeConverter)), JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public long? DeviceMemory { get; init; }
    [JsonPropertyName("host_memory"), JsonConverter(typeof(ByteSizeConverter)), JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public long? HostMemory { get; init; }
    [JsonPropertyName("disk_dir"), JsonIgnore(Condition = JsonIgnoreCondition.Never)] public string? DiskDir { get; init; }
    [JsonPropertyName("disk_memory"), JsonConverter(typeof(ByteSizeConverter)), JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public long? DiskMemory { get; init; }
    [JsonPropertyName("disk_read_ahead")] public bool? DiskReadAhead { get; init; }
    [JsonPropertyName("mem_tracer")] public MemTracerSettings MemTracer { get; init; } = new();
    [JsonPropertyName("checkpoint")] public CheckpointSettings Checkpoint { get; init; } = new();
    [JsonPropertyName("use_hybrid_adam")] public bool? UseHybridAdam { get; init; }
    [JsonPropertyName("prefetch")] public bool? Prefetch { get; init; }
    [JsonPropertyName("distributed")] public DistributedSettings Distributed { get; init; } = new();
    [JsonPropertyName("zero_optimization")] public ZeroSettings? ZeroOptimization { get; init; }

    // Sections are never null (a file may leave them out, not write null); zero_optimization is absent from the
    // resolved config, which records its effect (the engine) instead.

    /// <summary>Reads a file's text strictly: unknown keys, wrong types and nulls where none are allowed throw.</summary>
    /// <exception cref="JsonException">The text does not fit the record.</exception>
    public static DeepSpeedSettings FromJson(string json) =>
        JsonSerializer.Deserialize(json, ConfigJsonContext.Default.DeepSpeedSettings)
        ?? throw new JsonException("the configuration is null; it must be a JSON object.");

    /// <summary>Indented JSON in the file format: <see cref="ConfigLoader.Parse"/> reads it back to the same configuration.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJsonContext.Default.DeepSpeedSettings);

    /// <summary>
    /// The resolved configuration: every stored key of the key table with its value, under our one name per setting (no
    /// DeepSpeed aliases or switches: their effect is in the values). Keys the table leaves out at their default
    /// (Field.OmitWhenDefault) are left out here too, so that checkpoints saved before such a key existed still match.
    /// </summary>
    public static DeepSpeedSettings From(TrainingConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var scheduler = c.Scheduler;
        var defaults = new SchedulerSection();
        return new DeepSpeedSettings
        {
            Model = new()
            {
                Preset = c.Model.Preset, VocabSize = c.Model.VocabSize, NPositions = c.Model.ContextLength, NLayer = c.Model.Layers,
                NEmbd = c.Model.Hidden, NHead = c.Model.Heads, Dropout = c.Model.Dropout,
                Family = c.Model.Family, NumKeyValueHeads = c.Model.KvHeads, IntermediateSize = c.Model.Intermediate, RopeTheta = c.Model.RopeTheta,
                RmsNormEps = c.Model.RmsEps, TieWordEmbeddings = c.Model.TieEmbeddings,
                RopeScaling = c.Model.RopeScalingFactor is null && c.Model.RopeScalingLowFreqFactor is null && c.Model.RopeScalingHighFreqFactor is null
                              && c.Model.RopeScalingOriginalMaxPositions is null
                    ? null
                    : new()
                    {
                        Factor = c.Model.RopeScalingFactor, LowFreqFactor = c.Model.RopeScalingLowFreqFactor,
                        HighFreqFactor = c.Model.RopeScalingHighFreqFactor, OriginalMaxPositionEmbeddings = c.Model.RopeScalingOriginalMaxPositions,
                    },
            },
            Data = new()
            {
                Files = [.. c.Data.Files], ValidationFraction = c.Data.ValidationFraction, Tokenizer = c.Data.Tokenizer,
                TextField = c.Data.TextField, BinDType = c.Data.BinDType, CacheDir = c.Data.CacheDir,
            },
            TrainMicroBatchSizePerGpu = c.MicroBatchSize,
            GradientAccumulationSteps = c.GradientAccumulationSteps,
            TrainBatchSize = c.TrainBatchSize,
            SeqLen = c.SequenceLength,
            Steps = c.Steps,
            Optimizer = new()
            {
                Type = c.Optimizer.Type.ToString(),
                Params = new()
                {
                    Lr = c.Optimizer.LearningRate, Betas = [c.Optimizer.Beta1, c.Optimizer.Beta2], Eps = c.Optimizer.Eps,
                    WeightDecay = c.Optimizer.WeightDecay, NoDecayBiasAndNorm = c.Optimizer.NoDecayOnBiasAndNorm,
                },
            },
            Scheduler = new()
            {
                Type = scheduler.Type.ToString(),
                Params = new()
                {
                    WarmupSteps = scheduler.WarmupSteps, TotalSteps = scheduler.TotalSteps, MinLrRatio = scheduler.MinLrRatio,
                    MinLr = scheduler.MinLr,
                    WarmupMinLr = UnlessDefault(scheduler.WarmupMinLr, defaults.WarmupMinLr),
                    WarmupType = scheduler.WarmupType == defaults.WarmupType ? null : scheduler.WarmupType.ToString(),
                    WarmupMinRatio = UnlessDefault(scheduler.WarmupMinRatio, defaults.WarmupMinRatio),
                    CosMinRatio = UnlessDefault(scheduler.CosMinRatio, defaults.CosMinRatio),
                },
            },
            Bf16 = new()
            {
                Enabled = c.Precision is Precision.Bf16 or Precision.Bf16Fp32, Fp32Compute = c.Precision == Precision.Bf16Fp32,
            },
            Fp16 = new()
            {
                Enabled = c.Precision == Precision.Fp16, LossScale = c.Fp16.LossScale, InitialScalePower = c.Fp16.InitialScalePower,
                LossScaleWindow = c.Fp16.LossScaleWindow, Hysteresis = c.Fp16.Hysteresis, MinLossScale = c.Fp16.MinLossScale,
            },
            GradientClipping = c.GradientClipping,
            Seed = c.Seed,
            Eval = new() { Interval = c.Eval.Interval, Batches = c.Eval.Batches },
            StepsPerPrint = c.StepsPerPrint,
            Engine = c.Engine,
            Device = c.Device,
            Threads = c.Threads,
            ActivationCheckpointing = c.ActivationCheckpointing,
            ChunkSize = c.Chunks.ChunkSize,
            PlacementPolicy = c.Chunks.Placement.ToString(),
            DeviceMemory = c.Chunks.DeviceMemory,
            HostMemory = c.Chunks.HostMemory,
            DiskDir = c.Chunks.DiskDir,
            DiskMemory = c.Chunks.DiskMemory,
            DiskReadAhead = c.Chunks.DiskReadAhead,
            MemTracer = new() { WarmupDeviceRatio = c.Chunks.WarmupDeviceRatio, MarginUseRatio = c.Chunks.MarginUseRatio },
            Checkpoint = new()
            {
                SaveDir = c.Checkpoint.SaveDir, SaveEvery = c.Checkpoint.SaveEvery, KeepLast = c.Checkpoint.KeepLast,
                AutoResume = c.Checkpoint.AutoResume,
            },
            UseHybridAdam = c.Chunks.HybridAdam,
            Prefetch = c.Chunks.Prefetch,
            Distributed = new() { Mode = c.Distributed.Mode.ToString() },
        };
    }

    private static double? UnlessDefault(double value, double defaultValue) => value == defaultValue ? null : value;
}
