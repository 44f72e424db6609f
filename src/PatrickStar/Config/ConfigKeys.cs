using static PatrickStar.Config.Fields;

namespace PatrickStar.Config;

/// <summary>
/// Every configuration key, once: its JSON shape, default, meaning and range. Parsing, validation, unknown-key
/// messages, --set, the flags and the reference (`pstar config`, README) all read this table, so none can drift.
/// </summary>
internal static class ConfigKeys
{
    /// <summary>The engines accepted by the <c>engine</c> key. New engines add their name here.</summary>
    public static readonly string[] Engines = ["plain", "chunked"];

    private static readonly Bounds Positive = Bounds.AtLeast(1);
    private static readonly Bounds PresetOr = Bounds.AtLeast(1, " (or null to take the preset's value)");
    private static readonly Bounds NonNegative = Bounds.AtLeast(0);
    private static readonly Bounds Fraction = Bounds.Within(0, 1);
    private static readonly Bounds Probability = Bounds.Within(0, 1, maxOpen: true);

    // The order here is the order of the reference listing.
    public static readonly Field[] All =
    [
        NullableString("model.preset", c => c.Model.Preset, (c, v) => c.Model.Preset = v,
            "Model zoo preset, e.g. \"gpt2-mini\" or \"gpt2\"; null when all sizes below are given."),
        NullableInt("model.vocab_size", c => c.Model.VocabSize, (c, v) => c.Model.VocabSize = v,
            "Vocabulary size; null takes the preset's.", PresetOr),
        NullableInt("model.n_positions", c => c.Model.ContextLength, (c, v) => c.Model.ContextLength = v,
            "Maximum context length (>= seq_len); null takes the preset's.", PresetOr),
        NullableInt("model.n_layer", c => c.Model.Layers, (c, v) => c.Model.Layers = v,
            "Number of transformer blocks; null takes the preset's.", PresetOr),
        NullableInt("model.n_embd", c => c.Model.Hidden, (c, v) => c.Model.Hidden = v,
            "Hidden size (divisible by n_head); null takes the preset's.", PresetOr),
        NullableInt("model.n_head", c => c.Model.Heads, (c, v) => c.Model.Heads = v,
            "Number of attention heads; null takes the preset's.", PresetOr),
        NullableNumber("model.dropout", c => c.Model.Dropout, (c, v) => c.Model.Dropout = v,
            "Dropout probability; null takes the preset's.", Probability with { Note = " (or null to take the preset's value)" }),
        StringList("data.files", c => c.Data.Files, (c, v) => c.Data.Files = v,
            "Text files to train on; empty uses the built-in generated corpus."),
        Number("data.validation_fraction", c => c.Data.ValidationFraction, (c, v) => c.Data.ValidationFraction = v,
            "Fraction of the tokens (from the end) held out for validation.", Bounds.Within(0, 0.5, minOpen: true)),
        Int("train_micro_batch_size_per_gpu", c => c.MicroBatchSize, (c, v) => c.MicroBatchSize = v,
            "Sequences per forward/backward pass.", Positive),
        Int("gradient_accumulation_steps", c => c.GradientAccumulationSteps, (c, v) => c.GradientAccumulationSteps = v,
            "Micro batches accumulated per optimizer step.", Positive),
        NullableInt("train_batch_size", c => c.TrainBatchSize, (c, v) => c.TrainBatchSize = v,
            "Optional (DeepSpeed): must equal train_micro_batch_size_per_gpu * gradient_accumulation_steps * ranks; null or \"auto\" derives it.",
            Positive) with { OmitWhenDefault = true },
        Int("seq_len", c => c.SequenceLength, (c, v) => c.SequenceLength = v,
            "Tokens per training sequence (<= model.n_positions).", Positive),
        Int("steps", c => c.Steps, (c, v) => c.Steps = v, "Optimizer steps to run.", Positive),
        Choice("optimizer.type", c => c.Optimizer.Type, (c, v) => c.Optimizer.Type = v,
            "Optimizer; case-insensitive. Adam adds weight decay to the gradient (L2), AdamW decouples it (DeepSpeed's Adam with adam_w_mode)."),
        Number("optimizer.params.lr", c => c.Optimizer.LearningRate, (c, v) => c.Optimizer.LearningRate = v,
            "Peak learning rate.", Bounds.Above(0)),
        Betas("optimizer.params.betas", Probability),
        Number("optimizer.params.eps", c => c.Optimizer.Eps, (c, v) => c.Optimizer.Eps = v, "Adam epsilon.", Bounds.Above(0)),
        Number("optimizer.params.weight_decay", c => c.Optimizer.WeightDecay, (c, v) => c.Optimizer.WeightDecay = v,
            "Decoupled weight decay for AdamW, L2 penalty for Adam.", NonNegative),
        Bool("optimizer.params.no_decay_bias_and_norm", c => c.Optimizer.NoDecayOnBiasAndNorm,
            (c, v) => c.Optimizer.NoDecayOnBiasAndNorm = v,
            "Exempt biases and LayerNorm weights (1-D tensors) from weight decay."),
        Transient("optimizer.params.adam_w_mode", "bool", "(from optimizer.type)",
            "DeepSpeed: true selects AdamW, false Adam (whatever optimizer.type says).",
            (state, value) => { if (state.ReadBool(value, "optimizer.params.adam_w_mode", out bool v)) state.AdamWMode = v; }),
        Choice("scheduler.type", c => c.Scheduler.Type, (c, v) => c.Scheduler.Type = v,
            "Learning-rate schedule; case-insensitive. WarmupLR, WarmupDecayLR and WarmupCosineLR follow DeepSpeed's formulas."),
        Int("scheduler.params.warmup_steps", c => c.Scheduler.WarmupSteps, (c, v) => c.Scheduler.WarmupSteps = v,
            "Warm-up steps to the peak rate (DeepSpeed: warmup_num_steps).", NonNegative),
        Int("scheduler.params.warmup_num_steps", c => c.Scheduler.WarmupSteps, (c, v) => c.Scheduler.WarmupSteps = v,
            "DeepSpeed's name for warmup_steps.") with { Value = null },
        NullableInt("scheduler.params.total_steps", c => c.Scheduler.TotalSteps, (c, v) => c.Scheduler.TotalSteps = v,
            "Steps over which the rate decays (DeepSpeed: total_num_steps); null uses steps.", Bounds.AtLeast(1, " (or null to use steps)")),
        NullableInt("scheduler.params.total_num_steps", c => c.Scheduler.TotalSteps, (c, v) => c.Scheduler.TotalSteps = v,
            "DeepSpeed's name for total_steps.") with { Value = null },
        Number("scheduler.params.min_lr_ratio", c => c.Scheduler.MinLrRatio, (c, v) => c.Scheduler.MinLrRatio = v,
            "WarmupCosine / WarmupLinear: floor of the decay as a fraction of the peak rate.", Fraction),
        Number("scheduler.params.warmup_min_lr", c => c.Scheduler.WarmupMinLr, (c, v) => c.Scheduler.WarmupMinLr = v,
            "WarmupLR / WarmupDecayLR: the rate the warm-up starts from (and WarmupDecayLR decays to).", NonNegative)
            with { OmitWhenDefault = true },
        Transient("scheduler.params.warmup_max_lr", "number", "(optimizer.params.lr)",
            "WarmupLR / WarmupDecayLR: the peak rate; sets optimizer.params.lr, as in DeepSpeed.",
            (state, value) => { if (state.ReadNumber(value, "scheduler.params.warmup_max_lr", out double v)) state.WarmupMaxLr = v; }),
        Choice("scheduler.params.warmup_type", c => c.Scheduler.WarmupType, (c, v) => c.Scheduler.WarmupType = v,
            "DeepSpeed schedules: warm-up shape, log (DeepSpeed's default) or linear.") with { OmitWhenDefault = true },
        Number("scheduler.params.warmup_min_ratio", c => c.Scheduler.WarmupMinRatio, (c, v) => c.Scheduler.WarmupMinRatio = v,
            "WarmupCosineLR: the warm-up starts at this fraction of the peak rate.", Fraction) with { OmitWhenDefault = true },
        Number("scheduler.params.cos_min_ratio", c => c.Scheduler.CosMinRatio, (c, v) => c.Scheduler.CosMinRatio = v,
            "WarmupCosineLR: the cosine decays to this fraction of the peak rate.", Fraction) with { OmitWhenDefault = true },
        PrecisionKeys.Flag("bf16.enabled", Precision.Bf16, Precision.Fp16, "fp16.enabled",
            "bf16 compute with fp32 master weights, no loss scaling; false trains in fp32."),
        PrecisionKeys.Flag("fp16.enabled", Precision.Fp16, Precision.Bf16, "bf16.enabled",
            "fp16 compute with fp32 master weights and loss scaling (for GPUs: fp16 is very slow on CPUs)."),
        PrecisionKeys.Fp32ComputeFlag(),
        Number("fp16.loss_scale", c => c.Fp16.LossScale, (c, v) => c.Fp16.LossScale = v,
            "A fixed loss scale, or 0 for the dynamic scaler.", Bounds.AtLeast(0, " (0 selects the dynamic scaler)")),
        Int("fp16.initial_scale_power", c => c.Fp16.InitialScalePower, (c, v) => c.Fp16.InitialScalePower = v,
            "The dynamic scaler starts at 2^power.", Bounds.Within(0, 64)),
        Int("fp16.loss_scale_window", c => c.Fp16.LossScaleWindow, (c, v) => c.Fp16.LossScaleWindow = v,
            "Clean steps after which the dynamic scale doubles.", Positive),
        Int("fp16.hysteresis", c => c.Fp16.Hysteresis, (c, v) => c.Fp16.Hysteresis = v,
            "Overflowing steps tolerated before the scale is halved; every overflowing step is skipped.", Positive),
        Number("fp16.min_loss_scale", c => c.Fp16.MinLossScale, (c, v) => c.Fp16.MinLossScale = v,
            "Floor of the dynamic scale.", Bounds.Above(0)),
        Number("gradient_clipping", c => c.GradientClipping, (c, v) => c.GradientClipping = v,
            "Global gradient-norm clipping threshold; 0 disables clipping.", NonNegative),
        Long("seed", c => c.Seed, (c, v) => c.Seed = v, "Random seed for initialisation, data order and dropout."),
        Int("eval.interval", c => c.Eval.Interval, (c, v) => c.Eval.Interval = v,
            "Validate every this many steps and at the end; 0 validates only at the end.", NonNegative),
        Int("eval.batches", c => c.Eval.Batches, (c, v) => c.Eval.Batches = v,
            "Validation batches averaged per evaluation.", Positive),
        NullableInt("steps_per_print", c => c.StepsPerPrint, (c, v) => c.StepsPerPrint = v,
            "Plain output: a progress line every this many steps; null: about 30 lines per run.", Positive)
            with { OmitWhenDefault = true },
        String("engine", c => c.Engine, (c, v) => c.Engine = v,
            "Engine that runs the model: " + string.Join(", ", Engines.Select(e => $"\"{e}\"")) + "; zero_optimization selects \"chunked\"."),
        String("device", c => c.Device, (c, v) => c.Device = v,
            "Compute device: \"auto\" (CUDA when available), \"cpu\", \"cuda\" or \"cuda:N\"."),
        Int("threads", c => c.Threads, (c, v) => c.Threads = v,
            "Intra-op CPU threads for torch (at most the cores); 0 keeps torch's default.", NonNegative),
        PrecisionKeys.ActivationCheckpointing(),
        Size("chunk_size", c => c.Chunks.ChunkSize, (c, v) => c.Chunks.ChunkSize = v,
            "Chunked engine: elements per chunk (>= the largest parameter); null searches for the size that wastes least.",
            Bounds.AtLeast(1, " element (or null to search)")),
        Choice("placement_policy", c => c.Chunks.Placement, (c, v) => c.Chunks.Placement = v,
            "Chunked engine: \"dynamic\" (moved by the warm-up trace) or \"static\" (parameter chunks pinned on the device)."),
        Size("device_memory", c => c.Chunks.DeviceMemory, (c, v) => c.Chunks.DeviceMemory = v,
            "Chunked engine: device budget in bytes, or a string such as \"2GiB\"; null: a quarter of available memory on a CPU device.",
            Bounds.AtLeast(1, " byte (or null)")),
        Size("host_memory", c => c.Chunks.HostMemory, (c, v) => c.Chunks.HostMemory = v,
            "Chunked engine: host budget for chunks in bytes or \"16GiB\"; null: available memory minus the device budget.",
            Bounds.AtLeast(1, " byte (or null)")),
        Number("mem_tracer.warmup_device_ratio", c => c.Chunks.WarmupDeviceRatio, (c, v) => c.Chunks.WarmupDeviceRatio = v,
            "Chunked engine: fraction of the device budget chunks may use during the warm-up iteration.", Bounds.Within(0, 1, minOpen: true)),
        NullableString("checkpoint.save_dir", c => c.Checkpoint.SaveDir, (c, v) => c.Checkpoint.SaveDir = v,
            "Directory for step-NNNNNNNN training checkpoints; null saves none."),
        Int("checkpoint.save_every", c => c.Checkpoint.SaveEvery, (c, v) => c.Checkpoint.SaveEvery = v,
            "Save every this many steps; checkpoints are also saved at the end and on SIGINT/SIGTERM. 0: only then.", NonNegative),
        Int("checkpoint.keep_last", c => c.Checkpoint.KeepLast, (c, v) => c.Checkpoint.KeepLast = v,
            "Keep the newest this many checkpoints; 0 keeps all.", Bounds.AtLeast(0, " (0 keeps all)")),
        Bool("checkpoint.auto_resume", c => c.Checkpoint.AutoResume, (c, v) => c.Checkpoint.AutoResume = v,
            "Continue from the newest checkpoint in save_dir if it holds checkpoints of this config; false starts fresh and moves them to save_dir/earlier-UTC/."),
        Bool("use_hybrid_adam", c => c.Chunks.HybridAdam, (c, v) => c.Chunks.HybridAdam = v,
            "Chunked engine: update optimizer-state chunks on the device when the traced margin has room; false keeps them on the host."),
        Choice("distributed.mode", c => c.Distributed.Mode, (c, v) => c.Distributed.Mode = v,
            "Data parallelism (several ranks, chunked engine): \"gather\" (all-gather a group of chunks, reduce-scatter its gradients) or " +
            "\"broadcast\" (one chunk at a time from its owner: less memory, more collectives)."),
        Number("mem_tracer.margin_use_ratio", c => c.Chunks.MarginUseRatio, (c, v) => c.Chunks.MarginUseRatio = v,
            "Chunked engine: fraction of the device margin optimizer-state chunks may take.", Fraction),
        .. DeepSpeedKeys.Mapped,
    ];

    /// <summary>Pairs of names for one setting (ours, DeepSpeed's): a file may use either, not both.</summary>
    public static readonly (string Ours, string DeepSpeed)[] Aliases =
    [
        ("scheduler.params.warmup_steps", "scheduler.params.warmup_num_steps"),
        ("scheduler.params.total_steps", "scheduler.params.total_num_steps"),
    ];
}
