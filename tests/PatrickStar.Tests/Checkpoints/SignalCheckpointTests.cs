using System.Diagnostics;
using System.Runtime.InteropServices;
using PatrickStar.Checkpoints;
using Xunit;

namespace PatrickStar.Tests.Checkpoints;

/// <summary>SIGTERM / SIGINT to a real `pstar train` process: finish the step, save, exit cleanly; a second signal exits at once.</summary>
public class SignalCheckpointTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    [DllImport("libc", SetLastError = true)] private static extern int kill(int pid, int signal);
    private const int SigInt = 2, SigTerm = 15;

    private sealed record Outcome(int ExitCode, string Output, TimeSpan AfterSignal);

    /// <summary>Starts a long training run, waits for its first step line (or another that starts with <paramref name="trigger"/>), then sends the signals.</summary>
    private static Outcome Interrupt(string saveDir, int[] signals, params string[] model) => Interrupt(saveDir, "step ", -1, signals, model);

    /// <param name="gapMs">Milliseconds between signals, counted from the first one's acknowledgement; -1: wait for the
    /// acknowledgement only; 0: back to back, as a signal to a process group arrives when a parent forwards it too.</param>
    private static Outcome Interrupt(string saveDir, string trigger, int gapMs, int[] signals, params string[] model)
    {
        var start = new ProcessStartInfo(SigIntIgnoredHere() ? "env" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (start.FileName == "env") foreach (var a in new[] { "--default-signal=INT", "dotnet" }) start.ArgumentList.Add(a);
        start.ArgumentList.Add(typeof(PatrickStar.Cli.Program).Assembly.Location);
        foreach (var a in new[] { "train", "--steps", "100000", "--eval-interval", "0", "--save-dir", saveDir, "--plain-output" }.Concat(model))
            start.ArgumentList.Add(a);
        start.Environment["TERM"] = "dumb";
        using var process = Process.Start(start)!;
        var output = new System.Text.StringBuilder();
        var firstStep = new TaskCompletionSource();
        var stopping = new TaskCompletionSource();
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (e.Data.TrimStart().StartsWith(trigger)) firstStep.TrySetResult();
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (e.Data.Contains("finishing the current step")) stopping.TrySetResult();
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            Assert.True(firstStep.Task.Wait(Bound), "no step line within the bound:\n" + output);
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < signals.Length; i++)
            {
                // Signals of one kind sent back to back can merge into one: the next goes once the first was handled.
                if (i > 0 && gapMs != 0) Assert.True(stopping.Task.Wait(Bound), "the first signal was not acknowledged:\n" + output);
                if (i > 0 && gapMs > 0) Thread.Sleep(gapMs);
                Assert.Equal(0, kill(process.Id, signals[i]));
            }
            Assert.True(process.WaitForExit(Bound), "the process did not exit after the signal:\n" + output);
            process.WaitForExit(); // flush the asynchronous readers
            lock (output) return new Outcome(process.ExitCode, output.ToString(), clock.Elapsed);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>
    /// Whether this process ignores SIGINT, as every command a non-interactive shell starts in the background does (POSIX):
    /// a child inherits that, and pstar rightly leaves an ignored signal ignored, so the child then starts with SIGINT's
    /// default restored (GNU env) to be the foreground run the test is about.
    /// </summary>
    private static bool SigIntIgnoredHere()
    {
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & (1UL << (SigInt - 1))) != 0;
    }

    [Theory]
    [InlineData(SigTerm)]
    [InlineData(SigInt)]
    public void ASignalFinishesTheStepSavesAndExitsCleanly(int signal)
    {
        using var dir = new TempDir();
        var outcome = Interrupt(dir.Path, [signal], "--model", "gpt2-tiny", "--batch", "2", "--seq", "32");
        Assert.True(outcome.ExitCode == 0, $"exit code {outcome.ExitCode}:\n{outcome.Output}");
        Assert.Contains("checkpoint saved to", outcome.Output);
        var saved = TrainingCheckpoint.List(dir.Path);
        Assert.Single(saved);
        Assert.Contains(saved[0].Dir, outcome.Output);
        var (_, _, state, _) = TrainingCheckpoint.Inspect(dir.Path);
        Assert.Equal(saved[0].Step, state.StepsDone);
        Assert.True(state.StepsDone >= 1);
    }

    [Fact]
    public void ASignalBeforeTheFirstStepSavesNothingAndSaysSo()
    {
        using var dir = new TempDir();
        var outcome = Interrupt(dir.Path, "Preparing", -1, [SigTerm], "--model", "gpt2-tiny", "--batch", "2", "--seq", "32");
        Assert.True(outcome.ExitCode == 0, $"exit code {outcome.ExitCode}:\n{outcome.Output}");
        Assert.Contains("Stopped before the first step completed: nothing to save.", outcome.Output);
        Assert.DoesNotContain("NaN", outcome.Output);
        Assert.Empty(TrainingCheckpoint.List(dir.Path));
    }

    [Fact]
    public void ASecondSignalExitsAtOnceWithoutSaving()
    {
        using var dir = new TempDir();
        // Steps of several seconds (6 micro-batches of 8 x 256 tokens), so that the second signal, sent past the window in
        // which a repeat counts as the same signal delivered twice, still lands while the first step runs.
        var outcome = Interrupt(dir.Path, "step ", PatrickStar.Cli.Commands.TrainCommand.DuplicateSignalWindowMs + 300, [SigTerm, SigTerm],
            "--batch", "8", "--seq", "256", "--accum", "6");
        Assert.True(outcome.ExitCode == 128 + SigTerm, $"exit code {outcome.ExitCode}:\n{outcome.Output}");
        Assert.Contains("exiting now without saving", outcome.Output);
        Assert.Empty(TrainingCheckpoint.List(dir.Path));
    }

    [Fact]
    public void ASecondSignalLeavesNoDiskTierFilesBehind()
    {
        // The immediate exit skips .NET's exit handlers, where the disk tier removes its chunk files: it must remove them
        // on that path too, or every second Ctrl-C leaves the model's size on disk until the next run.
        using var dir = new TempDir();
        using var disk = new TempDir();
        var outcome = Interrupt(dir.Path, "step ", PatrickStar.Cli.Commands.TrainCommand.DuplicateSignalWindowMs + 300, [SigTerm, SigTerm],
            "--model", "gpt2-tiny", "--batch", "8", "--seq", "128", "--accum", "20", "--engine", "chunked", "--chunk-size", "3300000",
            "--host-memory", "76MiB", "--disk-dir", disk.Path);
        Assert.True(outcome.ExitCode == 128 + SigTerm, $"exit code {outcome.ExitCode}:\n{outcome.Output}");
        Assert.Contains("disk tier:", outcome.Output);
        Assert.Empty(Directory.EnumerateFileSystemEntries(disk.Path));
    }

    [Fact]
    public void ASignalDeliveredTwiceAtOnceStillSaves()
    {
        // `dotnet run`, `timeout` or a batch system signalling a process group: pstar gets the signal from the sender and
        // again from its parent, milliseconds apart. That is one request to stop, and the run must still be saved.
        using var dir = new TempDir();
        var outcome = Interrupt(dir.Path, "step ", 0, [SigTerm, SigTerm], "--model", "gpt2-tiny", "--batch", "2", "--seq", "32");
        Assert.True(outcome.ExitCode == 0, $"exit code {outcome.ExitCode}:\n{outcome.Output}");
        Assert.DoesNotContain("exiting now without saving", outcome.Output);
        Assert.Single(TrainingCheckpoint.List(dir.Path));
    }
}
