using PatrickStar.Cli.Commands;
using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Estimation;

/// <summary>The disk tier's estimate: chunks on disk, disk need, traffic and predicted step, against figures worked out by hand.</summary>
public class DiskEstimateTests
{
    private const long MiB = 1L << 20;
    // 8 layers of hidden 256, vocab 1000, context 64, in chunks of 1M elements (4 MiB in fp32).
    private static readonly GptConfig Model = new(1000, 64, 8, 256, 4);

    private static MemoryEstimate Memory(long hostBytes, int accumulation) =>
        MemoryEstimator.Estimate(new EstimateRequest(Model, Precision.Fp32, 1, 64, false, accumulation, 1L << 30, hostBytes, ChunkSize: 1 << 20), suggestKnobs: false);

    private static int Chunks => Memory(1L << 40, 1).Layout!.ChunkCount;

    [Fact]
    public void TheLayoutTheFiguresBelowAssume()
    {
        // 6.4M parameters: at most about one layer (786k) per 1M-element chunk, so 8 or 9 chunks; the figures below use N.
        Assert.InRange(Chunks, 7, 10);
    }

    [Fact]
    public void OptimizerStateGoesToDiskFirst()
    {
        long n = Chunks;
        // Accumulation 2: five lists of N chunks of 4 MiB = 20N MiB. Budget 20N - 10 MiB: the lists (parameters counted at
        // 4 B) exceed it, so all 3N optimizer chunks go to disk. Left: N parameter + N gradient chunks (8N MiB), and while
        // the last index is packed its three optimizer chunks beside them: 8N + 12 MiB at the peak. Packing made room for
        // its five lists beside the 8N - 8 MiB before it (8N + 12 MiB <= budget): no parameter chunk spilled.
        var d = DiskEstimator.Estimate(Memory((20 * n - 10) * MiB, 2), 1L << 30, new DiskRates(1e8, 1e8, "given"), computeSeconds: 0.5);
        Assert.Equal((3 * (int)n, 0), (d.OptimizerChunksOnDisk, d.ParamChunksOnDisk));
        Assert.Equal(16 * n * MiB, d.DiskBytes); // a slot for every chunk of the four kinds
        Assert.Equal((8 * n + 12) * MiB, d.HostNeedBytes);
        Assert.Equal(0, d.HostShortBytes);
        Assert.Equal(16 * 4 * MiB, d.StagingBytes); // 2 transfers + 2 read ahead + 3 groups x 4 kinds = 16 buffers of one fp32 chunk
        // Each optimizer chunk read once and written once: 12N MiB each way.
        Assert.Equal((12 * n * MiB, 12 * n * MiB), (d.ReadBytesPerStep, d.WriteBytesPerStep));
        double io = 2 * 12 * n * MiB / 1e8;
        Assert.Equal(io, d.IoSeconds!.Value, 12);
        Assert.Equal(io, d.PredictedStepSeconds!.Value, 12); // I/O longer than compute: I/O bound
        Assert.Equal(0.5 + io, d.SerialStepSeconds!.Value, 12);
        Assert.True(d.Fits);
    }

    [Fact]
    public void ParameterChunksFollowWhenTheOptimizerStateIsNotEnough()
    {
        long n = Chunks;
        // Accumulation 1, budget 24 MiB: packing the last index needs room for its four lists (16 MiB) beside the N - 1
        // parameter chunks before it (4N - 4 MiB): ceil((4N + 12 - 24) / 4) = N - 3 parameter chunks spill. The peak is
        // then 3 parameter chunks + the last index's four lists = 24 MiB.
        var d = DiskEstimator.Estimate(Memory(24 * MiB, 1), null, new DiskRates(2e8, 1e8, "given"), computeSeconds: 10);
        Assert.Equal((3 * (int)n, (int)n - 3), (d.OptimizerChunksOnDisk, d.ParamChunksOnDisk));
        Assert.Equal(16 * n * MiB, d.DiskBytes);
        Assert.Equal(24 * MiB, d.HostNeedBytes);
        // Parameter chunks are read in forward and backward and written once; optimizer chunks once each way.
        Assert.Equal(((20 * n - 24) * MiB, (16 * n - 12) * MiB), (d.ReadBytesPerStep, d.WriteBytesPerStep));
        double io = (20 * n - 24) * MiB / 2e8 + (16 * n - 12) * MiB / 1e8;
        Assert.Equal(io, d.IoSeconds!.Value, 12);
        Assert.Equal(10, d.PredictedStepSeconds!.Value, 12); // hidden under 10 s of compute
        Assert.Equal(10 + io, d.SerialStepSeconds!.Value, 12);
    }

    [Fact]
    public void AHostTooSmallEvenWithEveryChunkOnDiskIsShort()
    {
        // Every parameter chunk but the one being packed on disk: packing still needs room for four fp32 chunks (16 MiB).
        var fits = DiskEstimator.Estimate(Memory(16 * MiB, 1), null, null, null);
        Assert.Equal((Chunks - 1, 16 * MiB, 0L), (fits.ParamChunksOnDisk, fits.HostNeedBytes, fits.HostShortBytes));
        var d = DiskEstimator.Estimate(Memory(16 * MiB - 1, 1), null, null, null);
        Assert.Equal((16 * MiB, 1L), (d.HostNeedBytes, d.HostShortBytes));
        Assert.False(d.Fits);
        var tiers = DiskEstimator.WithDisk(Memory(16 * MiB - 1, 1), d);
        Assert.Equal(1, tiers.Tiers.Single(t => t.Tier == "host").Short);
    }

    [Fact]
    public void ABudgetTooSmallIsRefusedInOneLineBeforeAnyProbe()
    {
        long n = Chunks;
        var d = DiskEstimator.Estimate(Memory((20 * n - 10) * MiB, 2), 16 * n * MiB - 1, null, null);
        Assert.False(d.Fits);
        Assert.Equal(1, d.DiskShortBytes);
        Assert.Equal($"disk need {Bytes(16 * n * MiB)} ({16 * n * MiB} B: the files of {n} parameter and {3 * n} optimizer chunk slots, {3 * n} + 0 of them on disk " +
                     $"under the {Bytes((20 * n - 10) * MiB)} host budget) exceeds disk_memory {Bytes(16 * n * MiB - 1)} ({16 * n * MiB - 1} B); " +
                     $"raise --disk-memory to at least {16 * n}MiB.", d.Refusal);

        // The CLI: exit 3, the line on stderr, nothing else; disk_memory from a config file works as the flag does.
        using var dir = new TempDir();
        string config = Path.Combine(dir.Path, "c.json");
        File.WriteAllText(config, $"{{\"disk_memory\": {16 * n * MiB - 1}}}");
        string[] common = ["estimate", "--layers", "8", "--hidden", "256", "--heads", "4", "--vocab", "1000", "--context", "64",
            "--seq", "64", "--batch", "1", "--accum", "2", "--engine", "chunked", "--chunk-size", $"{1 << 20}", "--device-memory", "1GiB",
            "--host-memory", $"{(20 * n - 10) * MiB}"];
        foreach (var extra in new[] { new[] { "--disk-memory", $"{16 * n * MiB - 1}" }, new[] { "--config", config } })
        {
            var (code, stdout, stderr) = Pstar([.. common, .. extra]);
            Assert.Equal(EstimateCommand.DoesNotFit, code);
            Assert.Equal("", stdout);
            Assert.Equal("error: " + d.Refusal, stderr.Trim());
        }
    }

    [Fact]
    public void TheCliMeasuresTheBandwidthInTheDiskDirAndPredictsTheStep()
    {
        long n = Chunks;
        using var dir = new TempDir();
        var (code, stdout, stderr) = Pstar("estimate", "--layers", "8", "--hidden", "256", "--heads", "4", "--vocab", "1000", "--context", "64",
            "--seq", "64", "--batch", "1", "--accum", "2", "--engine", "chunked", "--chunk-size", $"{1 << 20}", "--device-memory", "1GiB",
            "--host-memory", $"{(20 * n - 10) * MiB}", "--disk-dir", dir.Path, "--disk-memory", "1GiB", "--disk-probe-size", "1MiB",
            "--step-seconds", "0.5", "--json");
        Assert.True(code == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        var disk = doc.RootElement.GetProperty("disk");
        Assert.Equal(16 * n * MiB, disk.GetProperty("disk_need_bytes").GetInt64());
        Assert.StartsWith($"measured in {dir.Path} (", disk.GetProperty("bandwidth_source").GetString());
        double read = disk.GetProperty("read_bytes_per_second").GetDouble(), write = disk.GetProperty("write_bytes_per_second").GetDouble();
        Assert.True(read > 0 && write > 0, $"{read} {write}");
        double io = 12 * n * MiB / read + 12 * n * MiB / write;
        Assert.Equal(0.5 + Math.Max(0, io - 0.5), disk.GetProperty("predicted_step_seconds").GetDouble(), 9);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path)); // the probe's files are gone
        // The host tier is checked against what stays on the host; the disk tier is in the tiers.
        var tiers = doc.RootElement.GetProperty("tiers").EnumerateArray().ToDictionary(t => t.GetProperty("tier").GetString()!, t => t.GetProperty("needed").GetInt64());
        Assert.Equal(((8 * n + 12) * MiB, 16 * n * MiB, 16 * 4 * MiB), (tiers["host"], tiers["disk"], tiers["staging"]));
    }

    [Fact]
    public void BandwidthIsParsedAsMegabytesPerSecondOrASizePerSecond()
    {
        Assert.Equal(1.5e9, EstimateDisk.Given("1500").ReadBytesPerSecond);
        Assert.Equal(1.5e9, EstimateDisk.Given("1.5GB/s").WriteBytesPerSecond);
        Assert.Equal(800.0 * MiB, EstimateDisk.Given("800MiB/s").ReadBytesPerSecond);
        Assert.Contains("--disk-bandwidth 'fast' is not a positive rate", Assert.Throws<ArgumentException>(() => EstimateDisk.Given("fast")).Message);
    }

    private static string Bytes(long b) => PatrickStar.Profiling.Bytes.Format(b);
}
