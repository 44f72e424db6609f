using System.Text.Json;
using static PatrickStar.Config.Fields;

namespace PatrickStar.Config;

/// <summary>
/// What a DeepSpeed ds_config.json holds beyond the keys we share: zero_optimization (stage and offload devices, which
/// select the chunk engine), and the known keys we do not support, which warn once each instead of failing, so that a
/// real DeepSpeed file loads while a typo still fails with "did you mean".
/// </summary>
internal static class DeepSpeedKeys
{
    private const string Stage = "zero_optimization.stage";
    private static readonly string[] OffloadDevices = ["none", "cpu", "nvme"];

    public static readonly Field[] Mapped =
    [
        Transient(Stage, "int, in [0, 3]", "0",
            "DeepSpeed ZeRO stage. 1-3 select the chunk engine, which partitions parameters, gradients and optimizer state "
            + "across ranks (stage 3's layout) whichever stage is named.",
            (state, value) => { if (state.ReadInteger(value, Stage, 0, 3, out long v)) state.ZeroStage = (int)v; }),
        OffloadDevice("zero_optimization.offload_param.device"),
        OffloadDevice("zero_optimization.offload_optimizer.device"),
    ];

    private static Field OffloadDevice(string key) =>
        Transient(key, "\"none\" | \"cpu\" | \"nvme\"", "\"none\"",
            "DeepSpeed offload: \"cpu\" selects the chunk engine, whose host tier holds what does not fit the device budget; "
            + "\"nvme\" warns (no disk tier yet) and does the same.",
            (state, value) =>
            {
                if (state.ReadChoice(value, key, OffloadDevices) is string device) state.OffloadDevices[key] = device;
            }) with { AcceptsAuto = false };

    private const string NoCounterpart = "has no counterpart here and is ignored";
    private const string NoDiskTier = "names a disk tier, which is not available yet; chunks stay in host memory";

    /// <summary>Known DeepSpeed keys we accept but do not act on, with why. A section listed here is skipped whole.</summary>
    public static readonly IReadOnlyDictionary<string, string> Ignored = BuildIgnored();

    private static Dictionary<string, string> BuildIgnored()
    {
        var ignored = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["wall_clock_breakdown"] = "is not printed by pstar train; `pstar bench` and `pstar train --profile FILE` time each phase",
            ["zero_optimization.offload_param.nvme_path"] = NoDiskTier,
            ["zero_optimization.offload_optimizer.nvme_path"] = NoDiskTier,
            ["aio"] = NoDiskTier,
        };
        foreach (string key in new[]
                 {
                     "prescale_gradients", "gradient_predivide_factor", "sparse_gradients", "memory_breakdown", "dump_state",
                     "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "communication_data_type", "amp",
                     "flops_profiler", "wandb", "comet", "comms_logger", "elasticity", "autotuning", "data_efficiency",
                     "curriculum_learning", "compression_training", "sparse_attention", "disable_allgather",
                     "checkpoint.tag_validation", "checkpoint.load_universal", "checkpoint.use_node_local_storage",
                     "checkpoint.parallel_write", "fp16.auto_cast", "fp16.consecutive_hysteresis", "fp16.fp16_master_weights_and_grads",
                     "bf16.immediate_grad_update", "optimizer.params.torch_adam", "optimizer.params.amsgrad",
                     "optimizer.params.bias_correction", "scheduler.params.last_batch_iteration",
                 })
            ignored[key] = NoCounterpart;
        foreach (string name in new[]
                 {
                     "contiguous_gradients", "overlap_comm", "reduce_scatter", "reduce_bucket_size", "allgather_partitions",
                     "allgather_bucket_size", "use_multi_rank_bucket_allreduce", "round_robin_gradients", "sub_group_size",
                     "elastic_checkpoint", "ignore_unused_parameters", "load_from_fp32_weights", "cpu_offload", "cpu_offload_params",
                     "cpu_offload_use_pin_memory", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
                     "stage3_model_persistence_threshold", "stage3_max_live_parameters", "stage3_max_reuse_distance",
                     "stage3_gather_16bit_weights_on_model_save", "stage3_gather_fp16_weights_on_model_save",
                     "gather_16bit_weights_on_model_save", "zero_hpz_partition_size", "zero_quantized_weights",
                     "zero_quantized_nontrainable_weights", "zero_quantized_gradients", "mics_shard_size",
                     "mics_hierarchical_params_gather", "memory_efficient_linear", "pipeline_loading_checkpoint",
                     "override_module_apply", "legacy_stage1",
                     "offload_param.pin_memory", "offload_param.buffer_count", "offload_param.buffer_size", "offload_param.max_in_cpu",
                     "offload_optimizer.pin_memory", "offload_optimizer.buffer_count", "offload_optimizer.fast_init",
                     "offload_optimizer.pipeline_read", "offload_optimizer.pipeline_write", "offload_optimizer.ratio",
                 })
            ignored[$"zero_optimization.{name}"] = "is a DeepSpeed tuning knob; the chunk engine places and moves chunks itself, so it is ignored";
        return ignored;
    }

    /// <summary>After every key is read: DeepSpeed settings that depend on others, aliases given twice, and their warnings.</summary>
    public static void Resolve(ConfigParseState state, TrainingConfig c)
    {
        foreach (var (ours, theirs) in ConfigKeys.Aliases)
            if (state.Present.Contains(ours) && state.Present.Contains(theirs))
                state.Error(theirs, $"{ours} and {theirs} are two names for one setting; keep one of them.");

        if (state.WarmupMaxLr is double peak)
        {
            const string key = "scheduler.params.warmup_max_lr";
            if (!Bounds.Above(0).Contains(peak))
                state.Error(key, $"{key} is {ConfigText.Show(peak)}, but it must be {Bounds.Above(0).Text}.");
            else
            {
                if (state.Present.Contains("optimizer.params.lr") && c.Optimizer.LearningRate != peak)
                    state.Warn(key, $"{key} ({ConfigText.Show(peak)}) replaces optimizer.params.lr ({ConfigText.Show(c.Optimizer.LearningRate)}) as the peak rate, as in DeepSpeed.");
                c.Optimizer.LearningRate = peak;
            }
        }

        if (state.AdamWMode is bool adamW)
            c.Optimizer.Type = adamW ? OptimizerType.AdamW : OptimizerType.Adam;
        else if (state.Present.Contains("zero_optimization") && c.Optimizer.Type == OptimizerType.Adam && c.Optimizer.WeightDecay > 0)
            state.Warn("optimizer.type", "optimizer.type \"Adam\" adds weight decay to the gradient (L2) here, while DeepSpeed's Adam decouples it "
                + "(adam_w_mode defaults to true there); write \"AdamW\" or \"adam_w_mode\": true for DeepSpeed's behaviour.");

        ResolveZero(state, c);
    }

    private static void ResolveZero(ConfigParseState state, TrainingConfig c)
    {
        if (state.ZeroStage is int stage and (1 or 2))
            state.Warn(Stage, $"{Stage} is {stage}: the chunk engine partitions parameters as well as gradients and optimizer state "
                + "across ranks (stage 3's layout); the result is the same, with less memory per rank.");
        foreach (var (key, device) in state.OffloadDevices)
            if (device == "nvme")
                state.Warn(key, $"{key} is \"nvme\", but the disk tier is not available yet: chunks that do not fit the device stay in host memory (as for \"cpu\").");

        bool offloaded = state.OffloadDevices.Values.Any(d => d != "none");
        // An explicit engine key wins: DeepSpeed's settings only choose when the file (or command line) does not.
        if ((state.ZeroStage is >= 1 || offloaded) && !state.Present.Contains("engine"))
            c.Engine = "chunked";
    }
}
