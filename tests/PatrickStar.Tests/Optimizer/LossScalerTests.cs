using PatrickStar.Config;
using PatrickStar.Optimizer;
using Xunit;

namespace PatrickStar.Tests.Optimizer;

public class LossScalerTests
{
    [Fact]
    public void HysteresisToleratesOverflowsBeforeBackingOff()
    {
        var s = new LossScaler(1024, dynamic: true, window: 100, hysteresis: 3, minScale: 1);
        Assert.True(s.Decide(double.PositiveInfinity, 1.0).Skip);
        Assert.Equal(1024, s.Scale); // first overflow: tolerated
        Assert.True(s.Decide(double.NaN, 1.0).Skip);
        Assert.Equal(1024, s.Scale); // second: tolerated
        Assert.True(s.Decide(double.PositiveInfinity, 1.0).Skip);
        Assert.Equal(512, s.Scale);  // third: backs off
        Assert.True(s.Decide(double.PositiveInfinity, 1.0).Skip);
        Assert.Equal(256, s.Scale);  // tolerance spent until the scale grows again
    }

    [Fact]
    public void ScaleGrowsAfterACleanWindowAndRestoresTheTolerance()
    {
        var s = new LossScaler(8, dynamic: true, window: 3, hysteresis: 2, minScale: 1);
        s.Decide(double.PositiveInfinity, 0); // hysteresis 2 -> 1
        Assert.Equal(1, s.HysteresisLeft);
        for (int i = 0; i < 2; i++) Assert.False(s.Decide(10, 0).Skip);
        Assert.Equal(8, s.Scale);
        Assert.False(s.Decide(10, 0).Skip);
        Assert.Equal(16, s.Scale); // three clean steps in a row
        Assert.Equal(2, s.HysteresisLeft);
        // An overflow restarts the clean count.
        s.Decide(10, 0);
        s.Decide(double.PositiveInfinity, 0);
        s.Decide(10, 0);
        s.Decide(10, 0);
        Assert.Equal(16, s.Scale);
    }

    [Fact]
    public void NeverBelowTheMinimumScale()
    {
        var s = new LossScaler(4, dynamic: true, window: 10, hysteresis: 1, minScale: 2);
        for (int i = 0; i < 5; i++) s.Decide(double.PositiveInfinity, 0);
        Assert.Equal(2, s.Scale);
    }

    [Fact]
    public void TheDecisionUnscalesTheNormAndFoldsInClipping()
    {
        var s = new LossScaler(256, dynamic: false);
        var d = s.Decide(scaledNorm: 256 * 4.0, clipThreshold: 1.0);
        Assert.False(d.Skip);
        Assert.Equal(4.0, d.GradNorm, 12);
        Assert.Equal(GradientClipping.Factor(4.0, 1.0) / 256, d.GradientMultiplier, 15);
        Assert.Equal(256, d.LossScale);
        Assert.True(s.Decide(double.NaN, 1.0).Skip);
        Assert.Equal(256, s.Scale); // static: overflow skips, the scale stays
    }

    [Fact]
    public void ConfigSelectsStaticDynamicOrNone()
    {
        Assert.Equal(1, LossScaler.From(new TrainingConfig { Precision = Precision.Bf16 }).Scale);
        var dyn = LossScaler.From(new TrainingConfig { Precision = Precision.Fp16, Fp16 = new Fp16Section { InitialScalePower = 12 } });
        Assert.True(dyn.IsDynamic);
        Assert.Equal(4096, dyn.Scale);
        var fixedScale = LossScaler.From(new TrainingConfig { Precision = Precision.Fp16, Fp16 = new Fp16Section { LossScale = 128 } });
        Assert.False(fixedScale.IsDynamic);
        Assert.Equal(128, fixedScale.Scale);
    }

    [Fact]
    public void StateRoundTrips()
    {
        var s = new LossScaler(64, dynamic: true, window: 5, hysteresis: 2);
        s.Decide(double.PositiveInfinity, 0);
        s.Decide(1, 0);
        var copy = new LossScaler(1, dynamic: true, window: 5, hysteresis: 2);
        copy.Restore(s.State);
        Assert.Equal(s.State, copy.State);
    }
}
