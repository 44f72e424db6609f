using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Distributed;

/// <summary>
/// Data parallelism with ranks as threads (InProcessCommunicator): N ranks with micro-batch b train exactly
/// like one rank with micro-batch N × b, and each rank holds about 1/N of the model data.
/// </summary>
public class DataParallelTests(ITestOutputHelper output)
{
    private const int GlobalBatch = 6; // divisible by 1, 2 and 3 ranks
    private const int Steps = 4;

    private static TrainingConfig Config(int microBatch, DataParallelMode mode, int accumulation = 1)
    {
        var c = TrainingHarness.Config(Steps);
        c.Engine = "chunked";
        c.MicroBatchSize = microBatch;
        c.GradientAccumulationSteps = accumulation;
        c.Chunks.ChunkSize = 4096; // the largest tensor (c_fc, 32 x 128): several chunks, so every rank owns some
        c.Chunks.DeviceMemory = 256L << 20;
        c.Chunks.HostMemory = 1L << 30;
        c.Distributed.Mode = mode;
        c.Threads = 1;
        return c;
    }

    private sealed record RankResult(List<double> Losses, Dictionary<string, float[]> Masters, long HeldBytes, EngineStatistics Statistics);

    private static RankResult Train(TrainingConfig config, ICommunicator? comm)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData(), communicator: comm);
        var losses = new List<double>();
        run.Trainer.StepCompleted += m => losses.Add(m.Loss);
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;
        var masters = new Dictionary<string, float[]>();
        foreach (var name in engine.ParameterNames)
        {
            using var t = engine.ReadState(name, StateKind.Master);
            masters[name] = t.data<float>().ToArray();
        }
        // Measured at the end of the last step, before the final validation fetched every chunk again.
        long held = comm is null ? engine.ModelDataBytesHeld : engine.Statistics.Chunks!.LastIteration!.Communication!.HeldChunkBytes;
        return new RankResult(losses, masters, held, engine.Statistics);
    }

    [Theory]
    [InlineData(2, DataParallelMode.Gather, 1)]
    [InlineData(3, DataParallelMode.Gather, 1)]
    [InlineData(2, DataParallelMode.Broadcast, 1)]
    [InlineData(3, DataParallelMode.Broadcast, 1)]
    [InlineData(2, DataParallelMode.Gather, 2)]
    public void RanksTrainLikeOneRankWithTheGlobalBatch(int ranks, DataParallelMode mode, int accumulation)
    {
        var single = Train(Config(GlobalBatch, mode, accumulation), null);
        var parallel = InProcessCommunicator.Run(ranks, comm => Train(Config(GlobalBatch / ranks, mode, accumulation), comm), TimeSpan.FromSeconds(60));

        for (int r = 0; r < ranks; r++)
            for (int s = 0; s < Steps; s++)
                Assert.True(Math.Abs(parallel[r].Losses[s] - single.Losses[s]) <= 1e-5 * Math.Abs(single.Losses[s]),
                    $"rank {r} step {s + 1}: loss {parallel[r].Losses[s]} vs {single.Losses[s]} alone");

        // Every parameter is owned by exactly one rank, and its master equals the single-rank one.
        var union = parallel.SelectMany(p => p.Masters).ToList();
        Assert.Equal(single.Masters.Keys.Order(), union.Select(kv => kv.Key).Order());
        double diff = 0, norm = 0;
        foreach (var (name, values) in union)
        {
            var reference = single.Masters[name];
            for (int i = 0; i < values.Length; i++)
            {
                diff += Math.Pow(values[i] - reference[i], 2);
                norm += Math.Pow(reference[i], 2);
            }
        }
        double relative = Math.Sqrt(diff / norm);
        output.WriteLine($"{ranks} ranks, {mode}, accumulation {accumulation}: final parameters differ by {relative:E2} (relative L2); " +
                         $"comm bytes per iteration on rank 0: {parallel[0].Statistics.Chunks?.LastIteration?.Communication?.Bytes ?? 0:N0}");
        Assert.True(relative <= 1e-5, $"final parameters differ by {relative:E3} (relative L2)");
    }

    [Theory]
    [InlineData(2, DataParallelMode.Gather)]
    [InlineData(3, DataParallelMode.Broadcast)]
    public void EachRankHoldsAboutItsShareOfTheModelData(int ranks, DataParallelMode mode)
    {
        var single = Train(Config(GlobalBatch, mode), null);
        var parallel = InProcessCommunicator.Run(ranks, comm => Train(Config(GlobalBatch / ranks, mode), comm), TimeSpan.FromSeconds(60));
        long chunkGroupBytes = 4096L * 16; // one chunk's parameters, master, momentum and variance in fp32
        foreach (var (p, r) in parallel.Select((p, r) => (p, r)))
        {
            output.WriteLine($"rank {r}/{ranks}: {p.HeldBytes:N0} bytes of chunks after a step; alone: {single.HeldBytes:N0}");
            Assert.InRange(p.HeldBytes, single.HeldBytes / ranks - chunkGroupBytes, single.HeldBytes / ranks + chunkGroupBytes);
        }
        // After a step remote copies are released and padding chunks hold nothing: every byte is on exactly one rank.
        Assert.Equal(single.HeldBytes, parallel.Sum(p => p.HeldBytes));
    }

    [Fact]
    public void CommunicatedBytesMatchTheTheory()
    {
        // Gather: every group all-gathered once in forward and reduce-scattered once in backward: 2 x padded chunks x chunk bytes.
        var results = InProcessCommunicator.Run(2, comm =>
        {
            using var run = GptRun.Create(Config(3, DataParallelMode.Gather), TrainingHarness.CyclicData(), communicator: comm);
            run.Trainer.Run();
            var engine = (ChunkedEngine)run.Engine;
            var c = engine.Statistics.Chunks!.LastIteration!.Communication!;
            return (Bytes: (double)c.Bytes, Chunks: engine.ChunkCount, Comm: c);
        }, TimeSpan.FromSeconds(60));
        double theory = 2.0 * results[0].Chunks * 4096 * 4;
        output.WriteLine($"comm bytes per iteration: {results[0].Bytes:N0}, theory {theory:N0}; {results[0].Comm}");
        Assert.Equal(theory, results[0].Bytes);
        // A CPU device: nothing is staged through host memory; the time in the communicator is measured, within the collectives' time.
        foreach (var (_, _, c) in results)
        {
            Assert.Equal((0L, 0L, 0.0), (c.StagedToHostBytes, c.StagedToDeviceBytes, c.StagingSeconds));
            Assert.InRange(c.CommunicatorSeconds, 1e-9, c.Seconds);
        }
    }

    [Fact]
    public void ThePlainEngineRefusesSeveralRanks()
    {
        var errors = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(2, comm =>
        {
            var c = TrainingHarness.Config(1);
            using var run = GptRun.Create(c, TrainingHarness.CyclicData(), communicator: comm);
            return 0;
        }, TimeSpan.FromSeconds(30)));
        Assert.Contains(errors.InnerExceptions, e => e.Message.Contains("data parallelism needs --engine chunked"));
    }

    [Fact]
    public void RanksWithDifferentConfigsAreNamed()
    {
        var errors = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(3, comm =>
        {
            var c = Config(2, DataParallelMode.Gather);
            if (comm.Rank == 2) c.Optimizer.LearningRate = 5e-3;
            using var run = GptRun.Create(c, TrainingHarness.CyclicData(), communicator: comm);
            return 0;
        }, TimeSpan.FromSeconds(30)));
        var mismatch = errors.InnerExceptions.OfType<RankMismatchException>().First();
        Assert.Equal(new[] { 2 }, mismatch.DifferingRanks);
        Assert.Contains("rank 2 differs", mismatch.Message);
    }
}
