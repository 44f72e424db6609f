using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// SIGINT/SIGTERM to `pstar launch`, passed on to the job so that it can save. mpirun itself cannot be asked: on either
/// signal it sends SIGTERM to the ranks and SIGKILL a few seconds later, which can cut a save short. So mpirun runs in
/// a session of its own (a terminal's Ctrl+C reaches only the launcher), and the first signal goes straight to every
/// rank process on this machine at once: each finishes its step and they save together, then exit, and mpirun with
/// them. A second signal ends the job at once (SIGKILL to the ranks, SIGTERM to mpirun).
/// </summary>
public sealed class JobSignals : IDisposable
{
    private const int SIGKILL = 9, SIGTERM = 15;
    private readonly Process mpirun;
    private readonly PosixSignalRegistration onInt, onTerm;
    private int received;

    /// <summary>The first signal received (0 when none); a job stopped by a second one exits with 128 + it.</summary>
    public int FirstSignal { get; private set; }

    public bool Forced => received > 1;

    public JobSignals(Process mpirun)
    {
        this.mpirun = mpirun;
        onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle);
        onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle);
    }

    /// <summary>A program that starts <paramref name="file"/> in a new session, when setsid is available.</summary>
    public static (string File, IReadOnlyList<string> Prefix) InOwnSession(string file) =>
        LaunchCommand.FindOnPath("setsid") is string setsid ? (setsid, new[] { "--wait", file }) : (file, Array.Empty<string>());

    private void Handle(PosixSignalContext context)
    {
        context.Cancel = true; // the launcher stays until the job has ended, to report its status
        int signal = context.Signal == PosixSignal.SIGTERM ? SIGTERM : 2;
        var below = Descendants(mpirun.Id);
        var ranks = below.Where(pid => !Launchers.Contains(CommandName(pid))).ToList();
        var launchers = below.Except(ranks).Append(mpirun.Id).ToList();
        if (Interlocked.Increment(ref received) == 1)
        {
            FirstSignal = signal;
            Console.Error.WriteLine($"{context.Signal}: passing it to the {ranks.Count} rank process(es); they finish the current step and save " +
                                    "(send it again to end the job at once)...");
            if (ranks.Count == 0) launchers.ForEach(pid => Kill(pid, signal)); // no rank started yet: mpirun stops the job
            foreach (int pid in ranks) Kill(pid, signal);
            return;
        }
        Console.Error.WriteLine($"{context.Signal} again: ending the job now without saving.");
        foreach (int pid in ranks) Kill(pid, SIGKILL);
        launchers.ForEach(pid => Kill(pid, SIGTERM));
    }

    // mpirun, and setsid when it had to fork; the ranks are everything else below the launcher.
    private static readonly HashSet<string> Launchers = ["setsid", "mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"];

    private static string CommandName(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/comm").Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return ""; }
    }

    /// <summary>Every process below <paramref name="root"/> (from /proc; empty where there is none).</summary>
    public static List<int> Descendants(int root)
    {
        var children = new Dictionary<int, List<int>>();
        try
        {
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
                string stat;
                try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; } // exited meanwhile
                // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so parse after the last ')'.
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (fields.Length > 1 && int.TryParse(fields[1], out int ppid))
                    (children.TryGetValue(ppid, out var list) ? list : children[ppid] = new List<int>()).Add(pid);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return new List<int>(); }
        var result = new List<int>();
        var pending = new Queue<int>([root]);
        while (pending.TryDequeue(out int p))
            foreach (int c in children.GetValueOrDefault(p) ?? new List<int>())
            {
                result.Add(c);
                pending.Enqueue(c);
            }
        return result;
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SysKill(int pid, int signal);

    private static void Kill(int pid, int signal) => SysKill(pid, signal); // a process that already exited is no error here

    public void Dispose()
    {
        onInt.Dispose();
        onTerm.Dispose();
    }
}
