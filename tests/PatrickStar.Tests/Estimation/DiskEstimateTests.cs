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
        // Accumulation 2: five lists of N chunks of 4 MiB = 20N MiB on the host. Budget 20N - 10 MiB: 10 MiB over, plus
        // the optimizer's 12 slice buffers (4 MiB chunks are below a slice: 48 MiB) = 58 MiB, so ceil(58 / 4) = 15 optimizer
        // chunks go to disk (60 MiB), leaving 20N + 48 - 60 = 20N - 12 MiB on the host.
        var d = DiskEstimator.Estimate(Memory((20 * n - 10) * MiB, 2), 1L << 30, new DiskRates(1e8, 1e8, "given"), computeSeconds: 0.5);
        Assert.Equal((15, 0), (d.OptimizerChunksOnDisk, d.ParamChunksOnDisk));
        Assert.Equal(60 * MiB, d.DiskBytes);
        Assert.Equal((20 * n - 12) * MiB, d.HostNeedBytes);
        Assert.Equal(0, d.HostShortBytes);
        // Each optimizer chunk read once and written once: 60 MiB each way at 1e8 B/s.
        Assert.Equal((60 * MiB, 60 * MiB), (d.ReadBytesPerStep, d.WriteBytesPerStep));
        Assert.Equal(2 * 60 * MiB / 1e8, d.IoSeconds!.Value, 12);
        Assert.Equal(2 * 60 * MiB / 1e8, d.PredictedStepSeconds!.Value, 12); // I/O longer than compute: I/O bound
        Assert.Equal(0.5 + 2 * 60 * MiB / 1e8, d.SerialStepSeconds!.Value, 12);
        Assert.True(d.Fits);
    }

    [Fact]
    public void ParameterChunksFollowWhenTheOptimizerStateIsNotEnough()
    {
        long n = Chunks;
        // Accumulation 1: 16N MiB. Budget 4N + 32 MiB: all 3N optimizer chunks go (16N + 48 - 12N = 4N + 48 MiB left),
        // then 2 parameter staging buffers (+8 MiB: 4N + 56) and ceil(24 / 4) = 6 parameter chunks: 4N + 32 MiB on the host.
        var d = DiskEstimator.Estimate(Memory((4 * n + 32) * MiB, 1), null, new DiskRates(2e8, 1e8, "given"), computeSeconds: 10);
        Assert.Equal((3 * (int)n, 6), (d.OptimizerChunksOnDisk, d.ParamChunksOnDisk));
        Assert.Equal((12 * n + 24) * MiB, d.DiskBytes);
        Assert.Equal((4 * n + 32) * MiB, d.HostNeedBytes);
        // Parameter chunks are read in forward and backward and written once; optimizer chunks once each way.
        Assert.Equal(((12 * n + 48) * MiB, (12 * n + 24) * MiB), (d.ReadBytesPerStep, d.WriteBytesPerStep));
        double io = (12 * n + 48) * MiB / 2e8 + (12 * n + 24) * MiB / 1e8;
        Assert.Equal(io, d.IoSeconds!.Value, 12);
        Assert.Equal(10, d.PredictedStepSeconds!.Value, 12); // hidden under 10 s of compute
        Assert.Equal(10 + io, d.SerialStepSeconds!.Value, 12);
    }

    [Fact]
    public void ABudgetTooSmallIsRefusedInOneLineBeforeAnyProbe()
    {
        long n = Chunks;
        var d = DiskEstimator.Estimate(Memory((20 * n - 10) * MiB, 2), 60 * MiB - 1, null, null);
        Assert.False(d.Fits);
        Assert.Equal(1, d.DiskShortBytes);
        Assert.Equal($"disk need 60.0 MiB ({60 * MiB} B: 15 optimizer + 0 parameter chunks that do not fit the {Bytes((20 * n - 10) * MiB)} host budget) " +
                     $"exceeds --disk-memory 60.0 MiB ({60 * MiB - 1} B); raise --disk-memory to at least 60MiB or --host-memory.", d.Refusal);

        // The CLI: exit 3, the line on stderr, nothing else; --disk-dir names a folder that is never probed (it does not exist: no probe ran).
        var (code, stdout, stderr) = Pstar("estimate", "--layers", "8", "--hidden", "256", "--heads", "4", "--vocab", "1000", "--context", "64",
            "--seq", "64", "--batch", "1", "--accum", "2", "--engine", "chunked", "--chunk-size", $"{1 << 20}", "--device-memory", "1GiB",
            "--host-memory", $"{(20 * n - 10) * MiB}", "--disk-memory", $"{60 * MiB - 1}");
        Assert.Equal(EstimateCommand.DoesNotFit, code);
        Assert.Equal("", stdout);
        Assert.Equal("error: " + d.Refusal, stderr.Trim());
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
        Assert.Equal(60 * MiB, disk.GetProperty("disk_need_bytes").GetInt64());
        Assert.StartsWith($"measured in {dir.Path} (", disk.GetProperty("bandwidth_source").GetString());
        double read = disk.GetProperty("read_bytes_per_second").GetDouble(), write = disk.GetProperty("write_bytes_per_second").GetDouble();
        Assert.True(read > 0 && write > 0, $"{read} {write}");
        double io = 60 * MiB / read + 60 * MiB / write;
        Assert.Equal(0.5 + Math.Max(0, io - 0.5), disk.GetProperty("predicted_step_seconds").GetDouble(), 9);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path)); // the probe's files are gone
        // The host tier is checked against what stays on the host; the disk tier is in the tiers.
        var tiers = doc.RootElement.GetProperty("tiers").EnumerateArray().ToDictionary(t => t.GetProperty("tier").GetString()!, t => t.GetProperty("needed").GetInt64());
        Assert.Equal(((20 * n - 12) * MiB, 60 * MiB), (tiers["host"], tiers["disk"]));
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
