using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Estimation;

/// <summary>The activation estimate against the peak measured with mallinfo2 (see <see cref="ActivationMeter"/> for the accounting).</summary>
public class ActivationEstimateTests
{
    private readonly ITestOutputHelper output;

    public ActivationEstimateTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    [Theory]
    // layers, hidden, heads, vocab, batch, seq, checkpointing
    [InlineData(2, 128, 4, 1000, 4, 128, false)]
    [InlineData(2, 128, 4, 1000, 4, 128, true)]
    [InlineData(4, 256, 8, 512, 2, 256, false)]
    [InlineData(4, 256, 8, 512, 2, 256, true)]
    [InlineData(1, 64, 2, 8000, 8, 64, false)]
    [InlineData(3, 192, 6, 2000, 8, 64, true)]
    public void ActivationEstimateIsWithin25PercentOfTheMeasuredPeak(int layers, int hidden, int heads, int vocab, int batch, int seq, bool checkpointing)
    {
        var config = new GptConfig(vocab, seq, layers, hidden, heads);
        var measured = ActivationMeter.Measure(config, Precision.Fp32, batch, seq, checkpointing);
        var estimate = MemoryEstimator.Activations(config, Precision.Fp32, batch, seq, checkpointing, chunked: false);
        double ratio = (double)estimate.Peak / measured.Peak;
        output.WriteLine($"L{layers} h{hidden} V{vocab} B{batch} S{seq} ckpt={checkpointing}: estimate {estimate.Peak:N0} (saved {estimate.Saved:N0}, at {estimate.PeakPhase}), measured {measured.Peak:N0}, ratio {ratio:0.000}");
        Assert.InRange(ratio, 0.75, 1.25);
    }
}
