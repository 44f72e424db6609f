using PatrickStar.Config;
using PatrickStar.Optimizer;
using PatrickStar.Tests.Cli;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>scheduler.params.min_lr (--min-lr): the decay's floor as an absolute rate, replacing min_lr_ratio.</summary>
public sealed class MinLrTests
{
    private const string Source = "run.json";

    private static TrainingConfig Parse(string type, string minLr) =>
        ConfigLoader.Parse($$$"""
            {"steps": 50, "optimizer": {"params": {"lr": 1e-3}},
             "scheduler": {"type": "{{{type}}}", "params": {"warmup_steps": 5, "total_steps": 40, "min_lr_ratio": 0.5, "min_lr": {{{minLr}}} } } }
            """, Source);

    [Theory]
    [InlineData("WarmupCosine")]
    [InlineData("WarmupLinear")]
    public void TheScheduleFloor_IsMinLr_NotMinLrRatio(string type)
    {
        TrainingConfig c = Parse(type, "3e-5");
        ConfigLoader.Validate(c, Source);
        var schedule = LearningRateSchedule.From(c);

        var rates = Enumerable.Range(0, 60).Select(schedule.At).ToList();
        Assert.Equal(3e-5, rates.Min());
        Assert.Equal(3e-5, schedule.At(40));
        Assert.Equal(3e-5, schedule.At(59));
        Assert.True(schedule.At(39) > 3e-5);
    }

    [Fact]
    public void WithoutMinLr_TheRatioStillDecides()
    {
        TrainingConfig c = Parse("WarmupCosine", "null");
        Assert.Equal(0.5e-3, LearningRateSchedule.From(c).At(40), 15);
    }

    [Theory]
    [InlineData("1e-3", "0.001")]
    [InlineData("2e-3", "0.002")]
    public void MinLrNotBelowThePeak_NamesBothValues(string minLr, string shown)
    {
        TrainingConfig c = Parse("WarmupCosine", minLr);
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(c, Source));
        Assert.Contains($"scheduler.params.min_lr is {shown}, but it must be below the peak rate optimizer.params.lr, which is 0.001", ex.Message);
    }

    [Fact]
    public void NegativeMinLr_IsOutOfRange()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(Parse("WarmupCosine", "-1e-5"), Source));
        Assert.Contains("scheduler.params.min_lr is -1E-05, but it must be >= 0 (or null to use min_lr_ratio).", ex.Message);
    }

    [Fact]
    public void Train_MinLrFlag_ReachesTheKey_AndIsChecked()
    {
        var (code, _, err) = CliTests.Pstar("train", "--lr", "0.001", "--min-lr", "0.002", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("scheduler.params.min_lr is 0.002, but it must be below the peak rate optimizer.params.lr, which is 0.001", err);
    }
}
