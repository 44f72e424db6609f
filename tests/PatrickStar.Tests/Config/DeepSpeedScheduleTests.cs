using PatrickStar.Config;
using PatrickStar.Optimizer;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>DeepSpeed's schedules against values computed by hand from their formulas.</summary>
public sealed class DeepSpeedScheduleTests
{
    private static LearningRateSchedule Schedule(ScheduleType type, double peak, int warmup, int total, WarmupType warmupType,
        double minLr = 0, double warmupMinRatio = 0, double cosMinRatio = 0)
    {
        var c = new TrainingConfig { Steps = total };
        c.Optimizer.LearningRate = peak;
        c.Scheduler.Type = type;
        c.Scheduler.WarmupSteps = warmup;
        c.Scheduler.WarmupType = warmupType;
        c.Scheduler.WarmupMinLr = minLr;
        c.Scheduler.WarmupMinRatio = warmupMinRatio;
        c.Scheduler.CosMinRatio = cosMinRatio;
        return LearningRateSchedule.From(c);
    }

    [Fact]
    public void WarmupLR_LogAndLinear_ThenFlatAtThePeak()
    {
        var log = Schedule(ScheduleType.WarmupLR, 1.1, 10, 100, WarmupType.Log, minLr: 0.1);
        Assert.Equal(0.1, log.At(0), 12);
        Assert.Equal(0.1 + Math.Log(5) / Math.Log(10), log.At(4), 12); // 0.79897
        Assert.Equal(1.1, log.At(10), 12);
        Assert.Equal(1.1, log.At(99), 12);

        var linear = Schedule(ScheduleType.WarmupLR, 1.1, 10, 100, WarmupType.Linear, minLr: 0.1);
        Assert.Equal(0.6, linear.At(5), 12);
    }

    [Fact]
    public void WarmupDecayLR_DecaysLinearlyToTheMinimum()
    {
        var s = Schedule(ScheduleType.WarmupDecayLR, 1.0, 10, 110, WarmupType.Linear);
        Assert.Equal(0.5, s.At(5), 12);
        Assert.Equal(1.0, s.At(10), 12);   // (110 - 10) / (110 - 10)
        Assert.Equal(0.5, s.At(60), 12);   // (110 - 60) / 100
        Assert.Equal(0.0, s.At(110), 12);
        Assert.Equal(0.0, s.At(200), 12);  // never below the minimum
    }

    [Fact]
    public void WarmupCosineLR_FromWarmupMinRatio_ToCosMinRatio()
    {
        var s = Schedule(ScheduleType.WarmupCosineLR, 2.0, 10, 110, WarmupType.Linear, warmupMinRatio: 0.2, cosMinRatio: 0.1);
        Assert.Equal(0.4, s.At(0), 12);                                  // 2 * 0.2
        Assert.Equal(1.2, s.At(5), 12);                                  // 2 * (0.2 + 0.8 * 0.5)
        Assert.Equal(2 * (0.1 + 0.9 * (1 + Math.Cos(Math.PI * 0.01)) / 2), s.At(10), 12);
        Assert.Equal(1.1, s.At(59), 12);                                 // half way: 2 * (0.1 + 0.9 * 0.5)
        Assert.Equal(0.2, s.At(109), 12);                                // 2 * 0.1
        Assert.Equal(0.2, s.At(500), 12);                                // stays at the floor
    }
}
