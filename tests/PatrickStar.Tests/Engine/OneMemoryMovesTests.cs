using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>
/// On a CPU device the device and host tiers are one memory: a chunk changes tier by changing owner (no copy, no fresh
/// buffer, no read-ahead work), trains bit for bit as with copies, and when every chunk fits nothing moves at all.
/// </summary>
public class OneMemoryMovesTests
{
    private readonly ITestOutputHelper output;

    public OneMemoryMovesTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <param name="FreshBuffers">Per step: buffers both tiers allocated afresh since the engine was built.</param>
    private sealed record Result(List<double> Losses, List<Tensor> Parameters, List<ChunkIterationStatistics> Iterations, List<long> FreshBuffers, bool ReadAhead);

    private static Result Train(TrainingConfig config)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var engine = (ChunkedEngine)run.Engine;
        long Fresh() => engine.DeviceTier.FreshAllocations + engine.HostTier.FreshAllocations;
        long built = Fresh();
        var losses = new List<double>();
        var iterations = new List<ChunkIterationStatistics>();
        var fresh = new List<long>();
        run.Trainer.StepCompleted += m =>
        {
            losses.Add(m.Loss);
            iterations.Add(m.EngineStatistics.Chunks!.LastIteration!);
            fresh.Add(Fresh() - built);
        };
        run.Trainer.Run();
        // Whether a read-ahead exists to take a copy engine (one that is never started: nothing is copied with it here).
        var unused = new WorkerThreadChunkCopy();
        bool readAhead = engine.UseChunkCopy(unused);
        if (!readAhead) unused.Dispose();
        return new Result(losses, run.Model.parameters().Select(p => p.detach().clone()).ToList(), iterations, fresh, readAhead);
    }

    [Fact]
    public void EvictionsEveryIterationHandBuffersOverWithoutCopiesFreshBuffersOrReadAhead()
    {
        var model = ChunkedEngineTests.Bigger(steps: 3, hidden: 256);
        long budget = ChunkedEngineTests.TightBudget(ChunkedEngineTests.Bigger(steps: 1, hidden: 256), output);
        var copying = ChunkedEngineTests.Chunked(model, budget);
        copying.Chunks.CopyWithinOneMemory = true;
        var copied = Train(copying);
        var handed = Train(ChunkedEngineTests.Chunked(ChunkedEngineTests.Bigger(steps: 3, hidden: 256), budget));
        foreach (var (name, r) in new[] { ("copies", copied), ("hand-over", handed) })
            for (int i = 0; i < r.Iterations.Count; i++)
                output.WriteLine($"{name} step {i + 1}: evictions {r.Iterations[i].Evictions}, moves {r.Iterations[i].ChunkMoves}, " +
                                 $"read ahead {r.Iterations[i].PrefetchBytes:N0} B, fresh buffers so far {r.FreshBuffers[i]}");

        Assert.Equal(copied.Losses, handed.Losses);
        for (int i = 0; i < copied.Parameters.Count; i++)
        {
            using var same = copied.Parameters[i].eq(handed.Parameters[i]).all();
            Assert.True(same.item<bool>(), $"parameter {i} differs between copies and hand-over");
        }
        // Both: chunks leave and come back every iteration.
        Assert.All(copied.Iterations.Concat(handed.Iterations), i => Assert.True(i.Evictions > 0, "every iteration must evict under this budget"));
        // With copies the tiers allocate buffers while training; handed over, never one, and no read-ahead thread works.
        Assert.True(copied.FreshBuffers[^1] > 0, "the copying engine allocates tier buffers (else this test tells nothing)");
        Assert.All(handed.FreshBuffers, n => Assert.Equal(0, n));
        Assert.True(copied.ReadAhead);
        Assert.False(handed.ReadAhead, "on one memory there is nothing to read ahead");
        Assert.All(handed.Iterations, i => Assert.Equal(0, i.PrefetchBytes + i.PrefetchHits));
    }

    [Fact]
    public void WithEveryChunkFittingNothingMovesAfterTheWarmUp()
    {
        foreach (var placement in new[] { ChunkPlacement.Dynamic, ChunkPlacement.Static })
        {
            var config = ChunkedEngineTests.Chunked(TrainingHarness.Config(steps: 4), deviceMemory: 1L << 30);
            config.Chunks.Placement = placement;
            var r = Train(config);
            foreach (var i in r.Iterations.Skip(1))
            {
                output.WriteLine($"{placement}: moves {i.ChunkMoves}, evictions {i.Evictions}, to device {i.BytesToDevice:N0} B, to host {i.BytesToHost:N0} B");
                Assert.Equal(0, i.ChunkMoves + i.Evictions + i.BytesToDevice + i.BytesToHost + i.PrefetchBytes);
            }
            // No buffer is allocated after the warm-up either.
            Assert.All(r.FreshBuffers.Skip(1), n => Assert.Equal(r.FreshBuffers[0], n));
        }
    }
}
