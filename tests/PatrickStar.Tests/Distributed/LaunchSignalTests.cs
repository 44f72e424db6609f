using System.Diagnostics;
using System.Runtime.InteropServices;
using PatrickStar.Cli.Commands;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Distributed;

/// <summary>
/// SIGTERM to `pstar launch -n 2 -- train`: the ranks get it, finish their step, save one checkpoint together and
/// exit; the launcher exits with their status and leaves no rank behind. A second signal ends the job at once.
/// </summary>
public class LaunchSignalTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);
    private const int SIGTERM = 15;

    [DllImport("libc", EntryPoint = "kill")]
    private static extern int Kill(int pid, int signal);

    private static readonly string[] Train =
    [
        "launch", "-n", "2", "--", "train", "--engine", "chunked", "--layers", "2", "--hidden", "32", "--heads", "4", "--context", "32",
        "--seq", "32", "--batch", "2", "--steps", "100000", "--eval-interval", "0", "--chunk-size", "1608224", "--device", "cpu",
        "--device-memory", "256MiB", "--host-memory", "2GiB", "--threads", "1", "--plain-output", "--save-dir", "ck", "--metrics", "m.jsonl",
    ];

    /// <summary>Starts the launcher, waits for the first metrics line (both ranks train), and returns it with its rank pids.</summary>
    private static (Process Launcher, List<int> Ranks, StringWriter Text) StartTraining(string dir)
    {
        var start = new ProcessStartInfo(LaunchCommand.FindOnPath("dotnet") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dir,
        };
        start.ArgumentList.Add(typeof(PatrickStar.Cli.Program).Assembly.Location);
        foreach (var a in Train) start.ArgumentList.Add(a);
        start.Environment["TERM"] = "dumb";
        var launcher = Process.Start(start)!;
        var text = new StringWriter();
        launcher.OutputDataReceived += (_, e) => { lock (text) text.WriteLine(e.Data); };
        launcher.ErrorDataReceived += (_, e) => { lock (text) text.WriteLine(e.Data); };
        launcher.BeginOutputReadLine();
        launcher.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        string metrics = Path.Combine(dir, "m.jsonl");
        while (!(File.Exists(metrics) && File.ReadAllText(metrics).Contains('\n')))
        {
            if (launcher.HasExited || clock.Elapsed > Bound)
            {
                if (!launcher.HasExited) launcher.Kill(entireProcessTree: true);
                Assert.Fail($"training did not start within {Bound.TotalSeconds} s:\n{text}");
            }
            Thread.Sleep(100);
        }
        var ranks = JobSignals.Descendants(launcher.Id).Where(p => RankCommandLine(p) is var c && c.Contains(" train ") && !c.Contains("mpirun")).ToList();
        if (ranks.Count != 2) EndJob(launcher, ranks);
        Assert.Equal(2, ranks.Count);
        return (launcher, ranks, text);
    }

    /// <summary>Kills the launcher's whole tree and the ranks (which mpirun's own session keeps apart): nothing may outlive a failed test.</summary>
    private static void EndJob(Process launcher, List<int> ranks)
    {
        foreach (int pid in ranks.Concat(JobSignals.Descendants(launcher.Id)).Distinct().Where(p => Alive(p) && RankCommandLine(p).Contains(" train ")))
            Kill(pid, 9);
        if (!launcher.HasExited) launcher.Kill(entireProcessTree: true);
    }

    private static string RankCommandLine(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' '); }
        catch (IOException) { return ""; }
    }

    private static bool Alive(int pid)
    {
        try { return !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z "); }
        catch (IOException) { return false; } // gone
    }

    private static void WaitForExit(Process launcher, StringWriter text)
    {
        if (!launcher.WaitForExit(Bound))
        {
            launcher.Kill(entireProcessTree: true);
            Assert.Fail($"the launcher did not exit within {Bound.TotalSeconds} s after the signal:\n{text}");
        }
        // Drains the output, bounded: a rank left behind would hold the pipes open for ever.
        Task.Run(() => launcher.WaitForExit()).Wait(TimeSpan.FromSeconds(10));
    }

    [MpiFact]
    public void SigtermToTheLauncherSavesACheckpointAndEndsEveryRank()
    {
        using var dir = new TempDir();
        var (launcher, ranks, text) = StartTraining(dir.Path);
        using var _ = launcher;
        try
        {
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, Kill(launcher.Id, SIGTERM));
            WaitForExit(launcher, text);
            output.WriteLine($"exit {launcher.ExitCode} {clock.Elapsed.TotalSeconds:0.0} s after SIGTERM:\n{text}");
            Assert.True(launcher.ExitCode == 0, $"exit code {launcher.ExitCode}:\n{text}");
            var saved = Directory.GetDirectories(Path.Combine(dir.Path, "ck"), "step-*");
            Assert.Single(saved);
            Assert.True(File.Exists(Path.Combine(saved[0], "manifest.json")) && File.Exists(Path.Combine(saved[0], "rank-00001-of-00002.safetensors")),
                $"incomplete checkpoint {saved[0]}:\n{text}");
            Assert.Contains("Stopped at step", text.ToString());
            Assert.DoesNotContain(ranks, Alive);
        }
        finally
        {
            EndJob(launcher, ranks);
        }
    }

    [MpiFact]
    public void ASecondSignalEndsTheJobAtOnce()
    {
        using var dir = new TempDir();
        var (launcher, ranks, text) = StartTraining(dir.Path);
        using var _ = launcher;
        try
        {
            Assert.Equal(0, Kill(launcher.Id, SIGTERM));
            Thread.Sleep(50);
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, Kill(launcher.Id, SIGTERM));
            WaitForExit(launcher, text);
            output.WriteLine($"exit {launcher.ExitCode} {clock.Elapsed.TotalSeconds:0.0} s after the second SIGTERM:\n{text}");
            Assert.NotEqual(0, launcher.ExitCode);
            Assert.Contains("ending the job now", text.ToString());
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.DoesNotContain(ranks, Alive);
        }
        finally
        {
            EndJob(launcher, ranks);
        }
    }
}
