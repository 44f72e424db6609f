using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace PatrickStar.Runtime;

/// <summary>
/// Ends the process at once without running exit handlers. Environment.Exit runs the C runtime's atexit handlers and
/// static destructors, among them libtorch's, while its intra-op threads may still be inside a kernel: that raced
/// into SIGSEGV (exit 139) on a user's second Ctrl-C. _exit(2) skips all of that; the kernel reclaims everything.
/// </summary>
public static class ImmediateExit
{
    [DllImport("libc", EntryPoint = "_exit")] private static extern void SysExit(int status);

    private static readonly ConcurrentDictionary<long, Action> Registered = new();
    private static long _nextId;

    /// <summary>
    /// Runs <paramref name="action"/> just before an immediate exit: for work that is safe while other threads still run
    /// and that the kernel will not do for us, such as removing a run's scratch files. Dispose the result to unregister.
    /// </summary>
    public static IDisposable Register(Action action)
    {
        long id = Interlocked.Increment(ref _nextId);
        Registered[id] = action;
        return new Registration(id);
    }

    /// <summary>Runs every registered action once, each in isolation (one failing must not keep the others from running).</summary>
    public static void RunRegistered()
    {
        foreach (var id in Registered.Keys.Order())
        {
            if (!Registered.TryRemove(id, out var action)) continue;
            try { action(); } catch (Exception) { /* exiting anyway: a file that cannot be removed is cleaned at the next start */ }
        }
    }

    /// <summary>Flushes the console, then ends the process with <paramref name="status"/>; never returns.</summary>
    public static void Now(int status)
    {
        RunRegistered();
        try { Console.Out.Flush(); } catch (Exception) { /* a closed pipe must not stop the exit */ }
        try { Console.Error.Flush(); } catch (Exception) { }
        if (OperatingSystem.IsWindows()) Environment.FailFast(null); // no _exit there; FailFast also skips handlers
        SysExit(status);
    }

    private sealed class Registration(long id) : IDisposable
    {
        public void Dispose() => Registered.TryRemove(id, out _);
    }
}
