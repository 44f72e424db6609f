using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Estimation;

/// <summary>
/// The disk estimate against the chunk engine with a disk tier: the chunks it puts on disk, and its host tier's measured
/// peak, under the tiny budgets of DiskTierEngineTests; and the start-up refusals the estimate makes.
/// </summary>
public sealed class DiskEstimateAgreesWithEngineTests : IDisposable
{
    private const long ChunkElements = 4096; // 16 KiB fp32 chunks; the tiny GPT fills about 8
    private const long ChunkBytes = ChunkElements * 4;
    private readonly TempDir disk = new();
    private readonly ITestOutputHelper output;

    public DiskEstimateAgreesWithEngineTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    public void Dispose() => disk.Dispose();

    private TrainingConfig Config(long hostChunks, int accumulation)
    {
        var c = TrainingHarness.Config(steps: 2);
        c.Engine = "chunked";
        c.GradientAccumulationSteps = accumulation;
        c.Threads = 1;
        c.Chunks = new ChunkSection { ChunkSize = ChunkElements, DeviceMemory = 256L << 20, HostMemory = hostChunks * ChunkBytes, DiskDir = disk.Path };
        return c;
    }

    private static DiskEstimate Estimate(TrainingConfig c)
    {
        var (device, host) = EstimateBudgets.For(c, CPU);
        var memory = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(c, GptRun.ResolveChoice(c), device, host), suggestKnobs: false);
        return DiskEstimator.Estimate(memory, c.Chunks.DiskMemory, null, null);
    }

    [Theory]
    [InlineData(6, 1)]  // parameter chunks spill too
    [InlineData(20, 1)] // only the optimizer state goes
    [InlineData(18, 2)] // with the fp32 gradient chunks, which stay on the host (12 of the 16 chunks the host needs)
    public void TheHostNeedBoundsTheEnginesHostPeakWithinOneChunkAndTheChunksOnDiskAgree(int hostChunks, int accumulation)
    {
        var config = Config(hostChunks, accumulation);
        var d = Estimate(config);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var engine = (ChunkedEngine)run.Engine;
        var onDisk = engine.ChunkBytesIn(Tier.Disk);
        run.Trainer.Run();
        long peak = engine.HostTier.PeakInUseBytes;
        output.WriteLine($"host {hostChunks} chunks, accumulation {accumulation}: estimate {d.HostNeedBytes:N0} B ({d.OptimizerChunksOnDisk} optimizer + " +
                         $"{d.ParamChunksOnDisk} parameter chunks on disk), engine peak {peak:N0} B, on disk at start: param {onDisk[ChunkKind.Param]:N0} B, " +
                         $"master {onDisk[ChunkKind.Master]:N0} B");
        Assert.Equal(d.ChunksPerKind, engine.ChunkCount);
        Assert.Equal(d.OptimizerChunksOnDisk * ChunkBytes, onDisk[ChunkKind.Master] + onDisk[ChunkKind.Momentum] + onDisk[ChunkKind.Variance]);
        Assert.Equal(d.ParamChunksOnDisk * ChunkBytes, onDisk[ChunkKind.Param]);
        Assert.True(peak <= d.HostNeedBytes, $"the engine's host peak {peak:N0} B exceeds the estimate {d.HostNeedBytes:N0} B");
        Assert.True(d.HostNeedBytes - peak <= ChunkBytes, $"the estimate {d.HostNeedBytes:N0} B is more than a chunk above the engine's host peak {peak:N0} B");
        Assert.True(d.Fits);
    }

    [Fact]
    public void ARunTheHostCannotHoldEvenWithEveryChunkOnDiskIsRefusedAtStart()
    {
        // Packing needs room for the four fp32 lists of one chunk index: 3 chunks of host cannot hold them.
        var config = Config(hostChunks: 3, accumulation: 1);
        var e = Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.Create(config, TrainingHarness.CyclicData()));
        output.WriteLine(e.Message);
        Assert.Contains($"host needs {PatrickStar.Profiling.Bytes.Format(4 * ChunkBytes)} ({4 * ChunkBytes:N0} bytes: the chunks not on disk", e.Message);
        Assert.Contains($"short by {PatrickStar.Profiling.Bytes.Format(ChunkBytes)}", e.Message);
        Assert.Contains("host memory 1.0 MiB (+976.0 KiB), with the disk tier (--host-memory 1MiB)", e.Message); // the fix, in whole MiB
        Assert.Empty(Directory.EnumerateFileSystemEntries(disk.Path)); // refused before any file was made
    }

    [Fact]
    public void ADiskBudgetBelowTheChunkFilesIsRefusedAtStart()
    {
        var config = Config(hostChunks: 6, accumulation: 1);
        var d = Estimate(config);
        config.Chunks.DiskMemory = d.DiskBytes - 1;
        var e = Assert.Throws<PatrickStar.Profiling.InsufficientMemoryException>(() => GptRun.Create(config, TrainingHarness.CyclicData()));
        Assert.Equal((Estimate(config).Refusal, 1L), (e.Message, Estimate(config).DiskShortBytes));
        config.Chunks.DiskMemory = d.DiskBytes;
        using var run = GptRun.Create(config, TrainingHarness.CyclicData()); // exactly the files: accepted by the estimate and the engine
    }
}
