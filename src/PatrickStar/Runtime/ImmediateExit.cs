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

    /// <summary>Flushes the console, then ends the process with <paramref name="status"/>; never returns.</summary>
    public static void Now(int status)
    {
        try { Console.Out.Flush(); } catch (Exception) { /* a closed pipe must not stop the exit */ }
        try { Console.Error.Flush(); } catch (Exception) { }
        if (OperatingSystem.IsWindows()) Environment.FailFast(null); // no _exit there; FailFast also skips handlers
        SysExit(status);
    }
}
