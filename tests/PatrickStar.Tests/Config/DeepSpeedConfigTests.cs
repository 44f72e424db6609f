using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>The DeepSpeed example configs in docs/examples load: mapped keys take effect, the keys we do not support warn once each.</summary>
public sealed class DeepSpeedConfigTests
{
    internal static string Example(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PatrickStar.sln")))
                return Path.Combine(dir.FullName, "docs", "examples", name);
        throw new InvalidOperationException("the repository root (PatrickStar.sln) is not above the test binaries");
    }

    /// <summary>The key each warning names (warnings read "SOURCE: KEY ..."), checked to be one per key.</summary>
    private static void AssertWarnedOnceEach(IReadOnlyCollection<string> warnings, string source, params string[] keys)
    {
        var named = warnings.Select(w => w[(source.Length + 2)..].Split(' ')[0]).ToList();
        Assert.Equal(keys.Order(), named.Order());
    }

    [Fact]
    public void Zero3OffloadExample_MapsItsKeys()
    {
        string path = Example("ds_zero3_offload.json");
        var warnings = new List<string>();
        TrainingConfig c = ConfigLoader.Load(path, warnings);
        ConfigLoader.Validate(c, path, ranks: 4);

        Assert.Equal("chunked", c.Engine); // stage 3 with offload to "cpu": the chunk engine and its host tier
        Assert.Null(c.TrainBatchSize); // "auto": derived, so any rank count fits
        Assert.Equal(4, c.MicroBatchSize);
        Assert.Equal(8, c.GradientAccumulationSteps);
        Assert.Equal(1.0, c.GradientClipping);
        Assert.Equal(10, c.StepsPerPrint);
        Assert.Equal(Precision.Fp16, c.Precision);
        Assert.Equal(16, c.Fp16.InitialScalePower);
        Assert.Equal(OptimizerType.AdamW, c.Optimizer.Type);
        Assert.Equal(3e-4, c.Optimizer.LearningRate);
        Assert.Equal((0.9, 0.999), (c.Optimizer.Beta1, c.Optimizer.Beta2));
        Assert.Equal(0.01, c.Optimizer.WeightDecay);
        Assert.Equal(ScheduleType.WarmupDecayLR, c.Scheduler.Type);
        Assert.Equal(0.0, c.Scheduler.WarmupMinLr);
        Assert.Equal(100, c.Scheduler.WarmupSteps);
        Assert.Equal(2000, c.Scheduler.TotalSteps);

        // false switches (wall_clock_breakdown, auto_cast, consecutive_hysteresis) stay quiet: off is what happens here.
        AssertWarnedOnceEach(warnings, path,
            "zero_optimization.offload_optimizer.pin_memory", "zero_optimization.offload_param.pin_memory",
            "zero_optimization.overlap_comm", "zero_optimization.contiguous_gradients", "zero_optimization.sub_group_size",
            "zero_optimization.reduce_bucket_size", "zero_optimization.stage3_prefetch_bucket_size",
            "zero_optimization.stage3_param_persistence_threshold", "zero_optimization.stage3_max_live_parameters",
            "zero_optimization.stage3_max_reuse_distance", "zero_optimization.stage3_gather_16bit_weights_on_model_save");
    }

    [Fact]
    public void Bf16WarmupCosineExample_MapsItsKeys()
    {
        string path = Example("ds_bf16_warmupcosine.json");
        var warnings = new List<string>();
        TrainingConfig c = ConfigLoader.Load(path, warnings);
        ConfigLoader.Validate(c, path, ranks: 1);
        var defaults = new TrainingConfig();

        Assert.Equal("chunked", c.Engine);
        Assert.Equal(32, c.TrainBatchSize);
        Assert.Equal(defaults.GradientClipping, c.GradientClipping); // "auto"
        Assert.Equal(50, c.StepsPerPrint);
        Assert.Equal(Precision.Bf16, c.Precision);
        Assert.Equal(OptimizerType.AdamW, c.Optimizer.Type); // "Adam" with adam_w_mode true
        Assert.Equal(6e-4, c.Optimizer.LearningRate);
        Assert.Equal(defaults.Optimizer.Eps, c.Optimizer.Eps); // "auto"
        Assert.Equal(ScheduleType.WarmupCosineLR, c.Scheduler.Type);
        Assert.Equal(5000, c.Scheduler.TotalSteps);
        Assert.Equal(200, c.Scheduler.WarmupSteps);
        Assert.Equal(0.01, c.Scheduler.WarmupMinRatio);
        Assert.Equal(0.1, c.Scheduler.CosMinRatio);
        Assert.Equal(WarmupType.Linear, c.Scheduler.WarmupType);

        AssertWarnedOnceEach(warnings, path,
            "wall_clock_breakdown", "zero_optimization.stage", "zero_optimization.offload_optimizer.device",
            "zero_optimization.offload_optimizer.nvme_path", "zero_optimization.offload_optimizer.pin_memory",
            "zero_optimization.offload_optimizer.buffer_count", "zero_optimization.allgather_partitions",
            "zero_optimization.allgather_bucket_size", "zero_optimization.overlap_comm", "zero_optimization.reduce_scatter",
            "zero_optimization.reduce_bucket_size", "zero_optimization.contiguous_gradients", "aio");
        Assert.Contains(warnings, w => w.Contains("disk tier is not available yet"));
    }

    [Fact]
    public void TrainBatchSize_InconsistentWithRanks_NamesTheThreeNumbers()
    {
        string path = Example("ds_bf16_warmupcosine.json");
        TrainingConfig c = ConfigLoader.Load(path);

        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(c, path, ranks: 2));
        Assert.Contains("train_batch_size is 32, but train_micro_batch_size_per_gpu (8) * gradient_accumulation_steps (4) * ranks (2) = 64", ex.Message);
    }

    [Fact]
    public void TypoInADeepSpeedSection_StillFailsWithDidYouMean()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(
            """{"zero_optimization": {"stage": 3, "overlap_com": true, "offload_param": {"devise": "cpu"}}}""", "ds.json"));

        Assert.Contains("zero_optimization.overlap_com is not a known key; did you mean 'overlap_comm'?", ex.Message);
        Assert.Contains("zero_optimization.offload_param.devise is not a known key; did you mean 'device'?", ex.Message);
    }

    [Theory]
    [InlineData("""{"zero_optimization": {"stage": 4}}""", "zero_optimization.stage is 4, which is outside the integer range 0..3")]
    [InlineData("""{"zero_optimization": {"offload_param": {"device": "gpu"}}}""", "zero_optimization.offload_param.device is \"gpu\", but it must be one of \"none\", \"cpu\", \"nvme\"")]
    [InlineData("""{"scheduler": {"params": {"warmup_steps": 5, "warmup_num_steps": 5}}}""", "are two names for one setting")]
    [InlineData("""{"scheduler": {"params": {"warmup_max_lr": 0}}}""", "scheduler.params.warmup_max_lr is 0, but it must be > 0")]
    public void BadDeepSpeedValues_NameKeyAndValue(string json, string expected)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "ds.json"));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void ExplicitEngine_WinsOverZeroOptimization_AndStageZeroKeepsThePlainEngine()
    {
        Assert.Equal("plain", ConfigLoader.Parse("""{"engine": "plain", "zero_optimization": {"stage": 3}}""", "x").Engine);
        Assert.Equal("plain", ConfigLoader.Parse("""{"zero_optimization": {"stage": 0}}""", "x").Engine);
    }

    [Fact]
    public void DeepSpeedActivationCheckpointingObject_Warns()
    {
        var warnings = new List<string>();
        TrainingConfig c = ConfigLoader.Parse("""{"activation_checkpointing": {"partition_activations": true}}""", "x", warnings);

        Assert.False(c.ActivationCheckpointing);
        Assert.Single(warnings, w => w.Contains("activation_checkpointing is DeepSpeed's object"));
    }
}
