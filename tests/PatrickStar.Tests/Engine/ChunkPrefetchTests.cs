using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>The read-ahead of parameter chunks (config key prefetch): same training, copies waited for, copy engine per device.</summary>
public class ChunkPrefetchTests
{
    private readonly ITestOutputHelper output;

    public ChunkPrefetchTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <summary>A GPT whose parameter chunks (21 of 1 MiB) outweigh its activations, so that a tight budget evicts every iteration.</summary>
    private static TrainingConfig Model(int steps) => ChunkedEngineTests.Bigger(steps, hidden: 256);

    private const long RuntimeTolerance = 4L << 20;

    private static long? budget;

    private long Budget() => budget ??= ChunkedEngineTests.TightBudget(Model(steps: 1), output);

    /// <param name="MeasuredDevicePeak">On a CPU device: glibc's in-use bytes less the host tier and what the process held before, sampled every 0.2 ms.</param>
    private sealed record Result(List<double> Losses, List<Tensor> Parameters, List<ChunkIterationStatistics> Iterations, long MeasuredDevicePeak);

    private Result Train(bool prefetch, IAsyncChunkCopy? copier = null)
    {
        var config = ChunkedEngineTests.Chunked(Model(steps: 3), Budget());
        config.Chunks.Prefetch = prefetch;
        config.Chunks.CopyWithinOneMemory = true; // read-ahead copies; on a CPU device tiers otherwise hand buffers over
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var engine = (ChunkedEngine)run.Engine;
        if (copier is not null) Assert.True(engine.UseChunkCopy(copier));
        var losses = new List<double>();
        var iterations = new List<ChunkIterationStatistics>();
        long peak;
        run.Trainer.StepCompleted += m => { losses.Add(m.Loss); iterations.Add(m.EngineStatistics.Chunks!.LastIteration!); };
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long baseline = MemoryMeter.NativeInUse() - engine.HostTier.UsedBytes - engine.DeviceTier.UsedBytes;
        using (var sampler = new PeakSampler(() => MemoryMeter.NativeInUse() - engine.HostTier.UsedBytes - baseline))
        {
            sampler.Start();
            run.Trainer.Run();
            peak = sampler.TakePeak();
        }
        output.WriteLine($"prefetch {prefetch}: measured device peak {peak:N0} B, budget {Budget():N0} B");
        foreach (var i in iterations)
            output.WriteLine($"prefetch {prefetch}: evictions {i.Evictions}, moves {i.ChunkMoves}, prefetched {i.PrefetchBytes:N0} B, hits {i.PrefetchHits}, " +
                             $"waited {i.PrefetchWaitSeconds * 1000:F2} ms, device peak {i.PeakDeviceBytes:N0} B of {Budget():N0}");
        return new Result(losses, run.Model.parameters().Select(p => p.detach().clone()).ToList(), iterations, peak);
    }

    private static void AssertBitForBit(Result expected, Result actual)
    {
        Assert.Equal(expected.Losses, actual.Losses);
        for (int i = 0; i < expected.Parameters.Count; i++)
            Assert.True(Same(expected.Parameters[i], actual.Parameters[i]), $"parameter {i} differs");
    }

    private static bool Same(Tensor a, Tensor b)
    {
        using var equal = a.eq(b).all();
        return equal.item<bool>();
    }

    private static Result? reference;

    private Result Reference() => reference ??= Train(prefetch: false);

    [Fact]
    public void ReadAheadUnderABudgetThatEvictsEveryIterationTrainsBitForBitAsWithout()
    {
        var off = Reference();
        var on = Train(prefetch: true);
        AssertBitForBit(off, on);
        foreach (var i in off.Iterations) Assert.Equal(0, i.PrefetchHits + i.PrefetchBytes);
        // Read-ahead copies go only into room the placement allows: the device's measured footprint stays within the budget
        // (plus what the runtime allocates besides chunks and the model's non-model data, as in ChunkedEngineTests).
        Assert.True(on.MeasuredDevicePeak <= Budget() + RuntimeTolerance, $"measured device peak {on.MeasuredDevicePeak:N0} B > budget {Budget():N0} B");
        // Sharper: no more than a chunk above the same training without read-ahead (copies beyond the allowance added ~1.8 chunks).
        long chunkBytes = Model(1).Chunks.ChunkSize!.Value * 4;
        Assert.True(on.MeasuredDevicePeak <= off.MeasuredDevicePeak + chunkBytes,
            $"read-ahead raised the measured device peak from {off.MeasuredDevicePeak:N0} B to {on.MeasuredDevicePeak:N0} B");
        // After the warm-up: evictions in every iteration, fetches served by read-ahead copies, the device within its budget.
        foreach (var i in on.Iterations.Skip(1))
        {
            Assert.True(i.Evictions > 0, "every iteration must evict under this budget");
            Assert.True(i.PrefetchHits > 0 && i.PrefetchBytes > 0, "the read-ahead must serve fetches");
            Assert.True(i.PeakDeviceBytes <= Budget(), $"device peak {i.PeakDeviceBytes:N0} B exceeds the budget {Budget():N0} B");
        }
    }

    [Fact]
    public void ASlowCopyIsWaitedForBeforeItsChunkIsUsed()
    {
        var slow = new SlowCopy(TimeSpan.FromMilliseconds(25));
        var on = Train(prefetch: true, slow);
        // Had a chunk been used before its copy completed, the module would have read a recycled buffer: training would differ.
        AssertBitForBit(Reference(), on);
        output.WriteLine($"slow copies started {slow.Started}, waited for before completion {slow.WaitsBeforeDone}");
        Assert.True(slow.Started > 0);
        Assert.True(slow.WaitsBeforeDone > 0, "fetches must wait for copies still in progress");
        Assert.True(on.Iterations.Skip(1).All(i => i.PrefetchWaitSeconds > 0), "the time waited must be counted");
    }

    [Fact]
    public void TheCurrentStreamFallbackSynchronizesOnlyWhileTheSourceIsRead()
    {
        // The CUDA path with the device calls faked: issued once, synchronized once and only when the source is still read (pinned).
        int issued = 0, synchronized = 0;
        using var source = arange(16, dtype: ScalarType.Float32);
        foreach (bool pinned in new[] { true, false })
        {
            using var destination = zeros(16, dtype: ScalarType.Float32);
            using var copier = new CudaCurrentStreamChunkCopy(new Device(DeviceType.CUDA, 0),
                copy: (d, s) => { issued++; d.copy_(s); }, synchronize: _ => synchronized++, readsAfterReturn: _ => pinned);
            int before = synchronized;
            var done = copier.Start(destination, source);
            Assert.Equal(!pinned, done.IsCompleted);
            done.Wait();
            done.Wait();
            Assert.True(done.IsCompleted);
            Assert.Equal(pinned ? 1 : 0, synchronized - before);
            Assert.True(Same(destination, source));
        }
        Assert.Equal(2, issued);

        // Through the engine: the CUDA copier's logic (copies issued, completions waited for) trains as without read-ahead.
        int engineSyncs = 0;
        var on = Train(prefetch: true, new CudaCurrentStreamChunkCopy(CPU, copy: (d, s) => { using (no_grad()) d.copy_(s); }, synchronize: _ => engineSyncs++, readsAfterReturn: _ => true));
        AssertBitForBit(Reference(), on);
        Assert.Equal(on.Iterations.Sum(i => i.PrefetchHits), engineSyncs);
    }

    [Fact]
    public void TheSideStreamCopyTrainsBitForBitWithComputeWaitingOnEventsNotTheHost()
    {
        // The fake runs a side-stream copy only when compute waits on its event (or on a host synchronize): a chunk used
        // before that would hold a recycled buffer's values, and training would differ.
        var fake = new FakeCudaRuntime();
        var on = Train(prefetch: true, new CudaChunkCopy(CPU, fake, isPinned: _ => true));
        AssertBitForBit(Reference(), on);
        long hits = on.Iterations.Sum(i => i.PrefetchHits), started = fake.Count("MemcpyAsync");
        output.WriteLine($"copies {started}, hits {hits}, compute waits {fake.Count("StreamWaitEvent compute")}, host synchronizes {fake.Count("EventSynchronize")}");
        Assert.True(hits > 0);
        Assert.Equal(hits, fake.Count("StreamWaitEvent compute"));
        Assert.True(fake.Count("EventSynchronize") <= started - hits, "a fetch must not synchronize the host");
        Assert.Equal((0, 0), (fake.LiveStreams, fake.LiveEvents));
    }

    /// <summary>A copy engine whose copies complete only after a delay, on another thread.</summary>
    private sealed class SlowCopy(TimeSpan delay) : IAsyncChunkCopy
    {
        public int Started, WaitsBeforeDone;

        public IChunkCopyCompletion Start(Tensor destination, Tensor source)
        {
            Started++;
            return new Completion(this, Task.Run(() =>
            {
                Thread.Sleep(delay);
                using (no_grad()) destination.copy_(source);
            }));
        }

        public void Dispose() { }

        private sealed class Completion(SlowCopy owner, Task copy) : IChunkCopyCompletion
        {
            public bool IsCompleted => copy.IsCompleted;

            public void Wait()
            {
                if (!copy.IsCompleted) Interlocked.Increment(ref owner.WaitsBeforeDone);
                copy.Wait();
            }
        }
    }
}
