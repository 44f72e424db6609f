using System.Text.Json;
using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Distributed;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Estimation;

/// <summary>
/// The estimator's device need against the chunk engine's, as a user meets them: the smallest budget `pstar estimate`
/// calls "fits" (E) must train in a fresh `pstar train` process without a warm-up refusal, and may be at most 25% above
/// the engine's measured need there (M: the statistic device_need_bytes, the smallest budget its checks would have
/// accepted, i.e. per moment the sampled non-model peak plus the parameter chunks it needed on the device).
/// </summary>
public class EstimateAgreesWithEngineTests
{
    private readonly ITestOutputHelper output;

    public EstimateAgreesWithEngineTests(ITestOutputHelper output) => this.output = output;

    [Theory]
    // gpt2-tiny variants (the built-in corpus needs GPT-2's vocabulary): layers, hidden, batch, seq, extra flags
    [InlineData(2, 64, 2, 64, "--precision fp32")]
    [InlineData(2, 64, 2, 64, "--precision bf16-fp32")]
    [InlineData(2, 128, 2, 128, "--precision bf16")]
    [InlineData(4, 128, 2, 32, "--precision bf16-fp32 --checkpointing")]
    [InlineData(8, 256, 2, 64, "--precision fp32 --chunk-size 13M")] // two chunks; the embedding's holds the head's working set
    public void TheSmallestFittingBudgetTrainsAndIsWithin25PercentOfTheMeasuredNeed(int layers, int hidden, int batch, int seq, string flags)
    {
        var extra = flags.Split(' ');
        var config = new TrainingConfig
        {
            Model = new ModelSection { Preset = "gpt2-tiny", Layers = layers, Hidden = hidden },
            MicroBatchSize = batch,
            SequenceLength = seq,
            Engine = "chunked",
            Precision = PrecisionNames.Parse(extra[1]),
            ActivationCheckpointing = extra.Contains("--checkpointing"),
        };
        if (extra.Contains("--chunk-size")) config.Chunks.ChunkSize = ByteSize.Parse(extra[Array.IndexOf(extra, "--chunk-size") + 1], "--chunk-size");
        var sizes = GptRun.ResolveModel(config);
        long fits = SmallestFittingBudget(config, sizes);

        using var dir = new TempDir();
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");
        var (code, text, took) = MpiTests.RunPstar(null, null, new[] { "train", "--model", "gpt2-tiny", "--layers", $"{layers}", "--hidden", $"{hidden}",
                "--batch", $"{batch}", "--seq", $"{seq}", "--engine", "chunked", "--device", "cpu", "--device-memory", $"{fits >> 20}MiB",
                "--host-memory", "2GiB", "--steps", "2", "--eval-interval", "0", "--metrics", metrics, "--plain-output" }
            .Concat(extra).ToArray());
        Assert.True(code == 0, $"the estimate said {fits >> 20} MiB fit, but pstar train exited {code}:\n{text}");
        using var last = JsonDocument.Parse(File.ReadLines(metrics).Last());
        long measured = (long)last.RootElement.GetProperty("device_need_bytes").GetDouble();
        double ratio = (double)fits / measured;
        output.WriteLine($"L{layers} h{hidden} b{batch} s{seq} {flags}: the estimate fits from {fits >> 20} MiB, the engine needed " +
                         $"{measured / 1048576.0:F1} MiB, ratio {ratio:F3} ({took.TotalSeconds:F1} s)");
        Assert.True(measured <= fits, $"the engine needed {measured:N0} bytes, more than the {fits:N0} the estimate called enough");
        Assert.True(ratio <= 1.25, $"the estimate needs {fits:N0} bytes, {ratio:F3} x the {measured:N0} the engine measured");
    }

    /// <summary>The smallest device budget (whole MiB) the estimate calls "fits", found by bisection; it is the estimate's own figure.</summary>
    private static long SmallestFittingBudget(TrainingConfig config, GptConfig sizes)
    {
        const long host = 2L << 30;
        MemoryEstimate At(long mib) => MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, sizes, mib << 20, host), suggestKnobs: false);
        long low = 0, high = 1 << 14; // MiB: low does not fit, high does
        Assert.True(At(high).Fits);
        while (high - low > 1)
        {
            long mid = (low + high) / 2;
            if (At(mid).Fits) high = mid; else low = mid;
        }
        Assert.Equal(high << 20, At(high).Tiers.Single(t => t.Tier == "device").Needed); // one device figure everywhere
        return high << 20;
    }
}
