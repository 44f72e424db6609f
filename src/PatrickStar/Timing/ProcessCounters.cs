using System.Runtime.InteropServices;

namespace PatrickStar.Timing;

/// <summary>
/// The process's CPU time and page faults so far (getrusage). Differences between two readings say what a step cost
/// in CPU (user: computing, sys: mostly page faults and futex waits) and in fresh pages, figures that a machine shared
/// with other work disturbs much less than wall time. Linux only; elsewhere <see cref="Read"/> returns null.
/// </summary>
public readonly record struct ProcessCounters(double UserSeconds, double SystemSeconds, long MinorFaults, long InvoluntarySwitches)
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Rusage
    {
        public long UtimeSec, UtimeUsec, StimeSec, StimeUsec;
        public long MaxRss, Ixrss, Idrss, Isrss, Minflt, Majflt, Nswap, Inblock, Oublock, Msgsnd, Msgrcv, Nsignals, Nvcsw, Nivcsw;
    }

    [DllImport("libc", EntryPoint = "getrusage")]
    private static extern int GetRusage(int who, out Rusage usage);

    private const int RusageSelf = 0;

    public static ProcessCounters? Read()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            if (GetRusage(RusageSelf, out var u) != 0) return null;
            return new ProcessCounters(u.UtimeSec + u.UtimeUsec / 1e6, u.StimeSec + u.StimeUsec / 1e6, u.Minflt, u.Nivcsw);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    public static ProcessCounters operator -(ProcessCounters a, ProcessCounters b) =>
        new(a.UserSeconds - b.UserSeconds, a.SystemSeconds - b.SystemSeconds, a.MinorFaults - b.MinorFaults, a.InvoluntarySwitches - b.InvoluntarySwitches);
}
