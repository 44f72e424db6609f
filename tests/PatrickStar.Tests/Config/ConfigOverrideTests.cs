using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>--set key=value: reaches every key of the table, through the same parsing and messages as a file.</summary>
public sealed class ConfigOverrideTests
{
    private const string Source = "command line";

    /// <summary>
    /// A valid value that differs from the default for every key, the key whose stored value shows the effect (itself, or
    /// what an alias or a DeepSpeed switch sets), and any setting it needs first.
    /// </summary>
    private static readonly Dictionary<string, (string Value, string Shows, string[] Needs)> Samples = new()
    {
        ["model.preset"] = ("gpt2", "model.preset", []),
        ["model.vocab_size"] = ("1000", "model.vocab_size", []),
        ["model.n_positions"] = ("512", "model.n_positions", []),
        ["model.n_layer"] = ("3", "model.n_layer", []),
        ["model.n_embd"] = ("96", "model.n_embd", []),
        ["model.n_head"] = ("4", "model.n_head", []),
        ["model.dropout"] = ("0.05", "model.dropout", []),
        ["model.family"] = ("llama", "model.family", []),
        ["model.num_key_value_heads"] = ("2", "model.num_key_value_heads", []),
        ["model.intermediate_size"] = ("256", "model.intermediate_size", []),
        ["model.rope_theta"] = ("500000", "model.rope_theta", []),
        ["model.rms_norm_eps"] = ("1e-6", "model.rms_norm_eps", []),
        ["model.tie_word_embeddings"] = ("true", "model.tie_word_embeddings", []),
        ["model.rope_scaling.factor"] = ("8", "model.rope_scaling.factor", []),
        ["model.rope_scaling.low_freq_factor"] = ("1", "model.rope_scaling.low_freq_factor", []),
        ["model.rope_scaling.high_freq_factor"] = ("4", "model.rope_scaling.high_freq_factor", []),
        ["model.rope_scaling.original_max_position_embeddings"] = ("8192", "model.rope_scaling.original_max_position_embeddings", []),
        ["data.files"] = ("[\"a.txt\"]", "data.files", []),
        ["data.validation_fraction"] = ("0.2", "data.validation_fraction", []),
        ["data.tokenizer"] = ("cl100k", "data.tokenizer", []),
        ["data.text_field"] = ("body", "data.text_field", []),
        ["data.bin_dtype"] = ("uint32", "data.bin_dtype", []),
        ["data.cache_dir"] = ("cache/tokens", "data.cache_dir", []),
        ["train_micro_batch_size_per_gpu"] = ("4", "train_micro_batch_size_per_gpu", []),
        ["gradient_accumulation_steps"] = ("3", "gradient_accumulation_steps", []),
        ["train_batch_size"] = ("8", "train_batch_size", []),
        ["seq_len"] = ("64", "seq_len", []),
        ["steps"] = ("10", "steps", []),
        ["optimizer.type"] = ("adam", "optimizer.type", []),
        ["optimizer.params.lr"] = ("3e-4", "optimizer.params.lr", []),
        ["optimizer.params.betas"] = ("[0.8, 0.99]", "optimizer.params.betas", []),
        ["optimizer.params.eps"] = ("1e-6", "optimizer.params.eps", []),
        ["optimizer.params.weight_decay"] = ("0.01", "optimizer.params.weight_decay", []),
        ["optimizer.params.no_decay_bias_and_norm"] = ("false", "optimizer.params.no_decay_bias_and_norm", []),
        ["optimizer.params.adam_w_mode"] = ("false", "optimizer.type", []),
        ["scheduler.type"] = ("WarmupLR", "scheduler.type", []),
        ["scheduler.params.warmup_steps"] = ("7", "scheduler.params.warmup_steps", []),
        ["scheduler.params.warmup_num_steps"] = ("8", "scheduler.params.warmup_steps", []),
        ["scheduler.params.total_steps"] = ("90", "scheduler.params.total_steps", []),
        ["scheduler.params.total_num_steps"] = ("91", "scheduler.params.total_steps", []),
        ["scheduler.params.min_lr_ratio"] = ("0.05", "scheduler.params.min_lr_ratio", []),
        ["scheduler.params.min_lr"] = ("1e-5", "scheduler.params.min_lr", []),
        ["scheduler.params.warmup_min_lr"] = ("1e-5", "scheduler.params.warmup_min_lr", []),
        ["scheduler.params.warmup_max_lr"] = ("2e-4", "optimizer.params.lr", []),
        ["scheduler.params.warmup_type"] = ("linear", "scheduler.params.warmup_type", []),
        ["scheduler.params.warmup_min_ratio"] = ("0.1", "scheduler.params.warmup_min_ratio", []),
        ["scheduler.params.cos_min_ratio"] = ("0.2", "scheduler.params.cos_min_ratio", []),
        ["bf16.enabled"] = ("true", "bf16.enabled", []),
        ["fp16.enabled"] = ("true", "fp16.enabled", []),
        ["bf16.fp32_compute"] = ("true", "bf16.fp32_compute", ["bf16.enabled=true"]),
        ["fp16.loss_scale"] = ("128", "fp16.loss_scale", []),
        ["fp16.initial_scale_power"] = ("8", "fp16.initial_scale_power", []),
        ["fp16.loss_scale_window"] = ("100", "fp16.loss_scale_window", []),
        ["fp16.hysteresis"] = ("3", "fp16.hysteresis", []),
        ["fp16.min_loss_scale"] = ("0.5", "fp16.min_loss_scale", []),
        ["gradient_clipping"] = ("0.5", "gradient_clipping", []),
        ["seed"] = ("42", "seed", []),
        ["eval.interval"] = ("5", "eval.interval", []),
        ["eval.batches"] = ("2", "eval.batches", []),
        ["steps_per_print"] = ("5", "steps_per_print", []),
        ["engine"] = ("chunked", "engine", []),
        ["device"] = ("cpu", "device", []),
        ["threads"] = ("1", "threads", []),
        ["activation_checkpointing"] = ("true", "activation_checkpointing", []),
        ["chunk_size"] = ("4M", "chunk_size", []),
        ["placement_policy"] = ("static", "placement_policy", []),
        ["device_memory"] = ("1GiB", "device_memory", []),
        ["host_memory"] = ("2GiB", "host_memory", []),
        ["disk_dir"] = ("/tmp/chunks", "disk_dir", []),
        ["disk_memory"] = ("8GiB", "disk_memory", []),
        ["disk_read_ahead"] = ("false", "disk_read_ahead", []),
        ["mem_tracer.warmup_device_ratio"] = ("0.5", "mem_tracer.warmup_device_ratio", []),
        ["checkpoint.save_dir"] = ("runs/a", "checkpoint.save_dir", []),
        ["checkpoint.save_every"] = ("10", "checkpoint.save_every", []),
        ["checkpoint.keep_last"] = ("5", "checkpoint.keep_last", []),
        ["checkpoint.auto_resume"] = ("false", "checkpoint.auto_resume", []),
        ["use_hybrid_adam"] = ("false", "use_hybrid_adam", []),
        ["distributed.mode"] = ("broadcast", "distributed.mode", []),
        ["mem_tracer.margin_use_ratio"] = ("0.5", "mem_tracer.margin_use_ratio", []),
        ["prefetch"] = ("false", "prefetch", []),
        ["zero_optimization.stage"] = ("3", "engine", []),
        ["zero_optimization.offload_param.device"] = ("cpu", "engine", []),
        ["zero_optimization.offload_optimizer.device"] = ("cpu", "engine", []),
    };

    private static void Set(TrainingConfig c, params string[] assignments) =>
        ConfigLoader.ApplyOverrides(c, assignments.Select(ConfigLoader.ParseAssignment).ToList(), Source);

    [Fact]
    public void SamplesCoverEveryKeyOfTheTable()
    {
        Assert.Equal(ConfigLoader.Reference.Select(r => r.Key).Order(), Samples.Keys.Order());
    }

    [Fact]
    public void Set_ReachesEveryKey()
    {
        foreach (var (key, _, _, _) in ConfigLoader.Reference)
        {
            var (value, shows, needs) = Samples[key];
            var c = new TrainingConfig();
            Set(c, needs);
            string? before = ConfigLoader.ValueOf(c, shows);

            Set(c, $"{key}={value}");
            ConfigLoader.Validate(c, Source);

            Assert.True(before != ConfigLoader.ValueOf(c, shows), $"--set {key}={value} left {shows} at {before}");
        }
    }

    /// <summary>Every sample, through the recorded JSON (DeepSpeedSettings) and back, is the same configuration.</summary>
    [Fact]
    public void EverySample_RoundTripsThroughTheSettingsRecord()
    {
        foreach (var (key, (value, _, needs)) in Samples)
        {
            var c = new TrainingConfig();
            Set(c, [.. needs, $"{key}={value}"]);
            DeepSpeedSettingsTests.AssertSameConfig(c, ConfigLoader.Parse(ConfigLoader.ToJson(c), Source), $"--set {key}={value}");
        }
    }

    [Fact]
    public void Set_ParsesValuesAsAFileWould()
    {
        var c = new TrainingConfig();
        Set(c, "optimizer.params.betas=[0.8,0.9]", "device_memory=2GiB", "model.preset=null", "data.files=[\"a.txt\",\"b.txt\"]",
            "optimizer.params.lr=3e-4", "placement_policy=STATIC");

        Assert.Equal((0.8, 0.9), (c.Optimizer.Beta1, c.Optimizer.Beta2));
        Assert.Equal(2L << 30, c.Chunks.DeviceMemory);
        Assert.Null(c.Model.Preset);
        Assert.Equal(["a.txt", "b.txt"], c.Data.Files);
        Assert.Equal(3e-4, c.Optimizer.LearningRate);
        Assert.Equal(ChunkPlacement.Static, c.Chunks.Placement);
    }

    /// <summary>The same mistake gives the same message from a file and from --set (same source name).</summary>
    [Theory]
    [InlineData("steps=abc", """{"steps": "abc"}""", "steps is \"abc\", but it must be an integer")]
    [InlineData("optimizer.params.lrr=0.1", """{"optimizer": {"params": {"lrr": 0.1}}}""", "did you mean 'lr'?")]
    [InlineData("optimizer.type=sgd", """{"optimizer": {"type": "sgd"}}""", "optimizer.type is \"sgd\", but it must be one of")]
    [InlineData("lr=0.1", """{"lr": 0.1}""", "It belongs at 'optimizer.params.lr'")]
    [InlineData("bf16.enabled=maybe", """{"bf16": {"enabled": "maybe"}}""", "bf16.enabled is \"maybe\", but it must be true or false")]
    public void Set_GivesTheFilesErrors(string assignment, string json, string expected)
    {
        var fromSet = Assert.Throws<ConfigException>(() => Set(new TrainingConfig(), assignment));
        var fromFile = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));

        Assert.Contains(expected, fromSet.Message);
        Assert.Equal(fromFile.Message, fromSet.Message);
    }

    [Fact]
    public void Set_OutOfRange_IsReportedByValidate_WithEveryProblem()
    {
        var c = new TrainingConfig();
        Set(c, "steps=0", "model.dropout=1.5");

        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(c, Source));
        Assert.Contains("steps is 0, but it must be >= 1.", ex.Message);
        Assert.Contains("model.dropout is 1.5, but it must be in [0, 1) (or null to take the preset's value).", ex.Message);
    }

    [Theory]
    [InlineData("steps", "write key=value")]
    [InlineData("=3", "write key=value")]
    [InlineData("optimizer..lr=3", "is not a key")]
    public void Set_MalformedAssignment_IsRefused(string assignment, string expected)
    {
        var ex = Assert.Throws<ConfigException>(() => Set(new TrainingConfig(), assignment));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Set_SameKeyTwice_IsRefused()
    {
        var ex = Assert.Throws<ConfigException>(() => Set(new TrainingConfig(), "steps=3", "steps=4"));
        Assert.Contains("steps is set more than once on the command line", ex.Message);
    }
}
