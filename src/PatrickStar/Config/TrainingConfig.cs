namespace PatrickStar.Config;

/// <summary>Numeric precision of the training run.</summary>
public enum Precision
{
    /// <summary>Everything in fp32.</summary>
    Fp32,
    /// <summary>bf16 compute and gradients, fp32 master weights and optimizer state; no loss scaling.</summary>
    Bf16,
    /// <summary>fp16 compute and gradients, fp32 master weights and optimizer state, with loss scaling (for GPUs).</summary>
    Fp16,
    /// <summary>
    /// bf16 parameters and gradients in memory, fp32 activations and matmuls: 14 B/param at fp32 speed on CPUs
    /// without fast bf16. Masters and Adam state are fp32 as for <see cref="Bf16"/>; each parameterised op upcasts
    /// its bf16 weight to fp32 for the computation. No loss scaling.
    /// </summary>
    Bf16Fp32,
}

/// <summary>fp16 loss scaling (DeepSpeed / PatrickStar keys under "fp16").</summary>
public sealed class Fp16Section
{
    /// <summary>A fixed loss scale; 0 selects the dynamic scaler.</summary>
    public double LossScale { get; set; } = 0;
    /// <summary>The dynamic scaler starts at 2^this.</summary>
    public int InitialScalePower { get; set; } = 16;
    /// <summary>Clean (non-overflowing) steps after which the dynamic scale doubles.</summary>
    public int LossScaleWindow { get; set; } = 1000;
    /// <summary>Overflowing steps tolerated before the scale is halved (each still skips its step).</summary>
    public int Hysteresis { get; set; } = 2;
    /// <summary>The dynamic scale never goes below this.</summary>
    public double MinLossScale { get; set; } = 1;
}

/// <summary>The architecture of a GPT model. Either a preset name or explicit sizes (sizes override the preset).</summary>
public sealed class ModelSection
{
    /// <summary>Name of a preset in the model zoo (e.g. "gpt2-mini", "gpt2"); null when all sizes are given.</summary>
    public string? Preset { get; set; } = "gpt2-mini";
    public int? VocabSize { get; set; }
    /// <summary>Maximum context length (n_positions).</summary>
    public int? ContextLength { get; set; }
    public int? Layers { get; set; }
    public int? Hidden { get; set; }
    public int? Heads { get; set; }
    public double? Dropout { get; set; }

    // A LLaMA's shape beyond the shared sizes (HF LlamaConfig's names); null takes the LLaMA preset's, or the family default.
    /// <summary>"gpt2" or "llama"; null: the preset's family (gpt2 without a preset).</summary>
    public string? Family { get; set; }
    public int? KvHeads { get; set; }
    public int? Intermediate { get; set; }
    public double? RopeTheta { get; set; }
    public double? RmsEps { get; set; }
    public bool? TieEmbeddings { get; set; }
    /// <summary>Llama-3 rotary scaling: all four set, or none (the preset's).</summary>
    public double? RopeScalingFactor { get; set; }
    public double? RopeScalingLowFreqFactor { get; set; }
    public double? RopeScalingHighFreqFactor { get; set; }
    public int? RopeScalingOriginalMaxPositions { get; set; }
}

public sealed class DataSection
{
    /// <summary>Text files to train on; empty means the built-in generated corpus.</summary>
    public List<string> Files { get; set; } = new();
    /// <summary>Fraction of the tokens (taken from the end) held out for validation.</summary>
    public double ValidationFraction { get; set; } = 0.1;
    /// <summary>gpt2, r50k, cl100k, o200k or a tokenizer folder; null: the --init-from folder's own tokenizer, else gpt2.</summary>
    public string? Tokenizer { get; set; }
    /// <summary>The jsonl field / parquet column holding the text.</summary>
    public string TextField { get; set; } = "text";
    /// <summary>Token id width of .bin files: uint16 or uint32.</summary>
    public string BinDType { get; set; } = "uint16";
    /// <summary>Cache folder for token caches; null: ~/.cache/pstar (or $XDG_CACHE_HOME/pstar).</summary>
    public string? CacheDir { get; set; }
}

public enum OptimizerType { AdamW, Adam }

public sealed class OptimizerSection
{
    public OptimizerType Type { get; set; } = OptimizerType.AdamW;
    public double LearningRate { get; set; } = 1e-3;
    public double Beta1 { get; set; } = 0.9;
    public double Beta2 { get; set; } = 0.95;
    public double Eps { get; set; } = 1e-8;
    public double WeightDecay { get; set; } = 0.1;
    /// <summary>When true, 1-D tensors (biases, LayerNorm weights) get no weight decay.</summary>
    public bool NoDecayOnBiasAndNorm { get; set; } = true;
}

/// <summary>
/// Learning-rate schedules: ours (linear warm-up from 0, then cosine or linear decay to min_lr_ratio) and DeepSpeed's three
/// (WarmupLR, WarmupDecayLR, WarmupCosineLR, with their warmup_min_lr / warmup_type / warmup_min_ratio / cos_min_ratio).
/// </summary>
public enum ScheduleType { Constant, WarmupCosine, WarmupLinear, WarmupLR, WarmupDecayLR, WarmupCosineLR }

/// <summary>How DeepSpeed's schedules warm up: log (DeepSpeed's default) or linear.</summary>
public enum WarmupType { Log, Linear }

public sealed class SchedulerSection
{
    public ScheduleType Type { get; set; } = ScheduleType.WarmupCosine;
    public int WarmupSteps { get; set; } = 20;
    /// <summary>Steps over which the schedule decays; null means the run's step count.</summary>
    public int? TotalSteps { get; set; }
    /// <summary>The floor of the decay, as a fraction of the peak learning rate.</summary>
    public double MinLrRatio { get; set; } = 0.1;
    /// <summary>The floor of the decay as an absolute rate (below the peak); when set it replaces <see cref="MinLrRatio"/>.</summary>
    public double? MinLr { get; set; }
    /// <summary>DeepSpeed WarmupLR / WarmupDecayLR: the rate warm-up starts from, and WarmupDecayLR decays back to.</summary>
    public double WarmupMinLr { get; set; }
    /// <summary>DeepSpeed schedules: the shape of the warm-up.</summary>
    public WarmupType WarmupType { get; set; } = WarmupType.Log;
    /// <summary>DeepSpeed WarmupCosineLR: the warm-up starts at this fraction of the peak rate.</summary>
    public double WarmupMinRatio { get; set; }
    /// <summary>DeepSpeed WarmupCosineLR: the cosine decays to this fraction of the peak rate.</summary>
    public double CosMinRatio { get; set; } = 0.0001;
}

public sealed class EvalSection
{
    /// <summary>Validate at step 1, every this many steps, and at the end; 0 validates only at the end.</summary>
    public int Interval { get; set; } = 50;
    /// <summary>Number of validation batches averaged per evaluation.</summary>
    public int Batches { get; set; } = 8;
}

/// <summary>Periodic training checkpoints.</summary>
public sealed class CheckpointSection
{
    /// <summary>Directory that receives step-NNNNNNNN checkpoints; null saves none.</summary>
    public string? SaveDir { get; set; }
    /// <summary>Save every this many optimizer steps (and at the end, and on SIGINT/SIGTERM); 0: only then.</summary>
    public int SaveEvery { get; set; }
    /// <summary>Keep the newest this many checkpoints; 0 keeps all.</summary>
    public int KeepLast { get; set; } = 3;
    /// <summary>
    /// Continue from the newest checkpoint in save_dir when it holds checkpoints of this config. False (--no-resume):
    /// start fresh, after moving the checkpoints already there into save_dir/earlier-UTC/.
    /// </summary>
    public bool AutoResume { get; set; } = true;
}

/// <summary>Where parameter chunks may live: placed by the warm-up trace, or pinned on the device (ZeRO-Offload's layout).</summary>
public enum ChunkPlacement { Dynamic, Static }

/// <summary>Settings of the chunk-based engine (PatrickStar-style keys).</summary>
public sealed class ChunkSection
{
    /// <summary>Elements per chunk; null searches for the size that wastes least.</summary>
    public long? ChunkSize { get; set; }
    public ChunkPlacement Placement { get; set; } = ChunkPlacement.Dynamic;
    /// <summary>Bytes the compute device may use; null: on a CPU device a quarter of the machine's available memory.</summary>
    public long? DeviceMemory { get; set; }
    /// <summary>Bytes the host tier may use for chunks; null: the machine's available memory minus the device budget.</summary>
    public long? HostMemory { get; set; }
    /// <summary>Directory of the disk tier's chunk files (it must exist); null: no disk tier.</summary>
    public string? DiskDir { get; set; }
    /// <summary>Bytes the disk tier's files may take; null: what this rank's chunks need.</summary>
    public long? DiskMemory { get; set; }
    /// <summary>Disk traffic overlaps compute (read ahead, write behind); false waits for each read and write.</summary>
    public bool DiskReadAhead { get; set; } = true;
    /// <summary>Library-only: opens the disk tier's chunk files (tests inject failing ones); null for the real files.</summary>
    public Tiers.ChunkFileOpener? DiskFileOpener { get; set; }
    /// <summary>Library-only: copy chunks between a CPU device and the host as between a GPU and the host (tests of the copy path).</summary>
    public bool CopyWithinOneMemory { get; set; }
    /// <summary>Library-only: the non-model tracer's allocator reading for the device (tests inject a CUDA reading over a fake); null: by the device.</summary>
    public Func<TorchSharp.torch.Device, Profiling.INonModelMemoryReader>? NonModelReader { get; set; }
    /// <summary>Library-only: bytes of one staging buffer of the optimizer's streamed slices; null: <see cref="Tiers.StreamedGroups.DefaultSliceBytes"/>.</summary>
    public long? DiskSliceBytes { get; set; }
    /// <summary>Fraction of the device budget chunks may use during the warm-up iteration.</summary>
    public double WarmupDeviceRatio { get; set; } = 0.2;
    /// <summary>Update optimizer-state chunks on the device when the warm-up trace shows room left over (the margin).</summary>
    public bool HybridAdam { get; set; } = true;
    /// <summary>Fraction of the margin that optimizer-state chunks may take (safety against noisy measurements).</summary>
    public double MarginUseRatio { get; set; } = 0.8;
    /// <summary>After the warm-up, start copying the chunks the next module needs to the device while the current one computes.</summary>
    public bool Prefetch { get; set; } = true;
    /// <summary>
    /// Library-only: update device-resident optimizer state with tensor ops even when the device is the CPU. On a
    /// GPU that is the only way; on a CPU the SIMD kernel runs there instead (same memory, faster, and independent of
    /// placement to the bit). For checking the GPU path on a CPU machine.
    /// </summary>
    public bool TensorAdamOnDevice { get; set; }
}

/// <summary>How data-parallel ranks move parameter chunks (config key distributed.mode).</summary>
public enum DataParallelMode
{
    /// <summary>All-gather a whole group of chunks (one per rank) before use, reduce-scatter its gradients after: fewer, larger collectives.</summary>
    Gather,
    /// <summary>Broadcast each chunk from its owner when needed and reduce its gradients to the owner: a buffer of one chunk instead of a group.</summary>
    Broadcast,
}

public sealed class DistributedSection
{
    public DataParallelMode Mode { get; set; } = DataParallelMode.Gather;
}

/// <summary>
/// Everything a training run needs. Loaded from a JSON file (DeepSpeed / PatrickStar style keys, see
/// <see cref="ConfigLoader"/>) and then overridden by command-line flags; <see cref="Validate"/> is
/// called after both.
/// </summary>
public sealed class TrainingConfig
{
    public ModelSection Model { get; set; } = new();
    public DataSection Data { get; set; } = new();
    public int MicroBatchSize { get; set; } = 8;
    public int GradientAccumulationSteps { get; set; } = 1;
    public int SequenceLength { get; set; } = 128;
    public int Steps { get; set; } = 300;
    public Precision Precision { get; set; } = Precision.Fp32;
    public Fp16Section Fp16 { get; set; } = new();
    public OptimizerSection Optimizer { get; set; } = new();
    public SchedulerSection Scheduler { get; set; } = new();
    /// <summary>Global-norm gradient clipping threshold; 0 disables clipping.</summary>
    public double GradientClipping { get; set; } = 1.0;
    public long Seed { get; set; } = 1337;
    public EvalSection Eval { get; set; } = new();
    public ChunkSection Chunks { get; set; } = new();
    public CheckpointSection Checkpoint { get; set; } = new();
    public DistributedSection Distributed { get; set; } = new();
    /// <summary>Recompute each transformer block's activations in backward instead of keeping them.</summary>
    public bool ActivationCheckpointing { get; set; }
    /// <summary>Which engine runs the model: "plain" (everything on the compute device) or "chunked".</summary>
    public string Engine { get; set; } = "plain";
    /// <summary>Compute device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N".</summary>
    public string Device { get; set; } = "auto";
    /// <summary>Intra-op threads for torch; 0 keeps torch's default (one per core).</summary>
    public int Threads { get; set; } = 0;
    /// <summary>
    /// DeepSpeed's train_batch_size, when a file or flag gives it: must equal micro batch x accumulation x ranks
    /// (checked by <see cref="ConfigLoader.Validate"/> once the ranks are known); null (or "auto") derives it.
    /// </summary>
    public int? TrainBatchSize { get; set; }
    /// <summary>Plain output prints a progress line every this many steps; null: about 30 lines per run.</summary>
    public int? StepsPerPrint { get; set; }

    /// <summary>Tokens consumed per optimizer step.</summary>
    public long TokensPerStep => (long)MicroBatchSize * GradientAccumulationSteps * SequenceLength;
}
