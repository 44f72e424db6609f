using System.Diagnostics;
using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;

namespace PatrickStar.Tests.Checkpoints;

/// <summary>A save directory keeps what it holds: pruning, the lock, re-saving a step and recovering from a crash during one.</summary>
public sealed class SaveDirectoryTests : IDisposable
{
    private readonly TempDir root = new();

    public SaveDirectoryTests() => TorchRuntime.EnsureLoaded();

    public void Dispose() => root.Dispose();

    private static TrainingConfig Config(int steps = 6, double lr = 1e-2)
    {
        var c = TrainingHarness.Config(steps);
        c.Optimizer.LearningRate = lr;
        return c;
    }

    /// <summary>Trains <paramref name="steps"/> steps, saving after each of <paramref name="saveAt"/>.</summary>
    private static void Train(TrainingConfig config, string saveDir, int keep, params int[] saveAt)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.StepCompleted += m =>
        {
            if (saveAt.Contains(m.Step)) run.SaveCheckpoint(saveDir, new TrainingCheckpoint.SaveOptions(keep));
        };
        run.Trainer.Run();
    }

    private static List<long> Steps(string saveDir) => TrainingCheckpoint.List(saveDir).Select(c => c.Step).ToList();

    [Fact]
    public void PruningKeepsTheCheckpointJustWrittenAndNeverTouchesNewerOrOtherConfigs()
    {
        string dir = root.File("runs");
        Train(Config(steps: 6), dir, keep: 0, saveAt: [4, 5, 6]);
        Train(Config(steps: 6, lr: 2e-2), dir, keep: 0, saveAt: [1]); // another run's older checkpoint
        // A run of the first config saves step 2 with keep 1: only older checkpoints of its own config may go, and there are none.
        Train(Config(steps: 3), dir, keep: 1, saveAt: [2, 3]);
        Assert.Equal([1, 3, 4, 5, 6], Steps(dir)); // step 2 was pruned by step 3; step 1 is another config's
    }

    [Fact]
    public void ASecondLockIsRefusedAndAStaleOneIsTakenOver()
    {
        string dir = root.File("runs");
        Directory.CreateDirectory(dir); // kept when the lock goes (a directory the lock created and left empty is removed)
        using (SaveDirLock.Acquire(dir))
        {
            var e = Assert.Throws<CheckpointException>(() => SaveDirLock.Acquire(dir));
            Assert.Contains($"pid {Environment.ProcessId} on host {Environment.MachineName}", e.Message);
            Assert.Contains(SaveDirLock.PathIn(Path.GetFullPath(dir)), e.Message);
        }
        using (var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            gone.WaitForExit();
            File.WriteAllText(SaveDirLock.PathIn(dir), new JsonObject
            {
                ["pid"] = gone.Id, ["host"] = Environment.MachineName, ["started_utc"] = DateTime.UtcNow.ToString("O"),
            }.ToJsonString());
            var messages = new List<string>();
            using (SaveDirLock.Acquire(dir, messages.Add))
                Assert.Contains($"pid {gone.Id}", Assert.Single(messages));
        }
        Assert.False(File.Exists(SaveDirLock.PathIn(dir)), "the lock is removed when the run ends");
    }

    [Fact]
    public void ARunThatMadeNoStepSinceResumingDoesNotRewriteItsCheckpoint()
    {
        string dir = root.File("runs");
        Train(Config(steps: 6), dir, keep: 3, saveAt: [2]);
        string step2 = Path.Combine(dir, "step-00000002");
        string marker = Path.Combine(step2, "marker");
        File.WriteAllText(marker, "the same directory");
        using var run = GptRun.Create(Config(steps: 6), TrainingHarness.CyclicData(), resumeFrom: dir);
        Assert.Equal(step2, run.SaveCheckpoint(dir));
        Assert.True(File.Exists(marker), "the checkpoint resumed from was rewritten");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ACrashBetweenTheRenamesOfAResaveIsRecovered(bool newCopyComplete)
    {
        string dir = root.File("runs");
        Train(Config(steps: 6), dir, keep: 3, saveAt: [2]);
        string step2 = Path.Combine(dir, "step-00000002");
        // The crashed process (a pid that no longer runs) had moved step-2 aside and written a complete new copy.
        int deadPid;
        using (var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!) { gone.WaitForExit(); deadPid = gone.Id; }
        string partial = Path.Combine(dir, $".step-00000002.partial-{deadPid}");
        if (newCopyComplete)
        {
            Directory.CreateDirectory(partial);
            foreach (var f in Directory.GetFiles(step2)) File.Copy(f, Path.Combine(partial, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(partial, "from-partial"), "");
        }
        Directory.Move(step2, step2 + $".old-{deadPid}");
        Assert.Empty(TrainingCheckpoint.List(dir));

        var messages = new List<string>();
        var config = Config(steps: 6);
        config.Checkpoint.SaveDir = dir;
        Assert.Equal(step2, ResumePlanner.Decide(config, explicitResume: null, leader: true, messages.Add));
        Assert.Contains("Recovered", messages[0]);
        Assert.Equal(newCopyComplete, File.Exists(Path.Combine(step2, "from-partial")));
        Assert.Equal([step2], Directory.GetDirectories(dir).Where(d => !d.Contains(".partial-")));
        TrainingCheckpoint.Inspect(step2); // verifies
    }

    [Fact]
    public void AFailedResaveOfTheSameStepPutsTheOldCopyBack()
    {
        string dir = root.File("runs");
        var config = Config(steps: 2);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.Run();
        string saved = run.SaveCheckpoint(dir);
        var options = new TrainingCheckpoint.SaveOptions(BeforeStage: s => { if (s == TrainingCheckpoint.ResaveStage) throw new IOException("crash"); });
        Assert.Throws<IOException>(() => run.SaveCheckpoint(dir, options));
        Assert.Equal([saved], TrainingCheckpoint.List(dir).Select(c => c.Dir));
        Assert.Equal([saved], Directory.GetDirectories(dir));
        TrainingCheckpoint.Inspect(saved);
    }
}
