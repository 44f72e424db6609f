using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>bf16.fp32_compute: a refinement of bf16.enabled selecting <see cref="Precision.Bf16Fp32"/>.</summary>
public class Bf16Fp32ConfigTests
{
    private const string Source = "test.json";

    [Theory]
    [InlineData("""{"bf16": {"enabled": true, "fp32_compute": true}}""")]
    [InlineData("""{"bf16": {"fp32_compute": true, "enabled": true}}""")]
    public void Fp32ComputeWithBf16SelectsTheMixedMode(string json)
    {
        var c = ConfigLoader.Parse(json, Source);
        Assert.Equal(Precision.Bf16Fp32, c.Precision);
        var again = ConfigLoader.Parse(ConfigLoader.ToJson(c), Source);
        Assert.Equal(Precision.Bf16Fp32, again.Precision);
    }

    [Fact]
    public void Fp32ComputeFalseKeepsPlainBf16AndRoundTrips()
    {
        var c = ConfigLoader.Parse("""{"bf16": {"enabled": true, "fp32_compute": false}}""", Source);
        Assert.Equal(Precision.Bf16, c.Precision);
        Assert.Equal(Precision.Bf16, ConfigLoader.Parse(ConfigLoader.ToJson(c), Source).Precision);
        Assert.Equal(Precision.Fp32, ConfigLoader.Parse(ConfigLoader.ToJson(new TrainingConfig()), Source).Precision);
    }

    [Theory]
    [InlineData("""{"bf16": {"fp32_compute": true}}""")]
    [InlineData("""{"bf16": {"enabled": false, "fp32_compute": true}}""")]
    [InlineData("""{"fp16": {"enabled": true}, "bf16": {"fp32_compute": true}}""")]
    public void Fp32ComputeWithoutBf16IsRefused(string json)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));
        Assert.Contains("bf16.fp32_compute is true but bf16.enabled is not", e.Message);
    }
}
