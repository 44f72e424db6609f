using PatrickStar.Distributed;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Training;
using Xunit;

namespace PatrickStar.Tests.Distributed;

/// <summary>
/// A stop request that reaches one rank only (a signal arrives at each rank at its own moment): every rank stops after
/// the same step. Stopping alone, the rank would save while the others waited in the next step's collectives for ever
/// (seen in CI as a launcher that never exited after SIGTERM).
/// </summary>
public class StopAgreementTests
{
    [Fact]
    public void ARankAskedToStopStopsEveryRankAfterTheSameStep()
    {
        var results = InProcessCommunicator.Run(2, comm =>
        {
            var c = TrainingHarness.Config(steps: 6);
            c.Engine = "chunked";
            c.MicroBatchSize = 1;
            c.Chunks.ChunkSize = 4096;
            c.Chunks.DeviceMemory = 256L << 20;
            c.Chunks.HostMemory = 1L << 30;
            c.Threads = 1;
            using var run = GptRun.Create(c, TrainingHarness.CyclicData(), communicator: comm);
            using var cancel = new CancellationTokenSource();
            run.Trainer.StepCompleted += m => { if (comm.Rank == 0 && m.Step == 2) cancel.Cancel(); };
            var summary = run.Trainer.Run(cancel.Token);
            return (summary.StepsDone, summary.Cancelled);
        }, TimeSpan.FromSeconds(30));
        Assert.All(results, r => Assert.Equal((2, true), r));
    }
}
