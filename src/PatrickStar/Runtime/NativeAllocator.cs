using System.Runtime.InteropServices;

namespace PatrickStar.Runtime;

/// <summary>
/// Tunes glibc's malloc, which libtorch uses for CPU tensors. By default every block over 32 MB is
/// a fresh mmap that is unmapped on free, so each training step page-faults its activations and
/// logits in again; on virtual machines first touch costs about 1 s per 256 MB. Keeping freed memory
/// in the heap (no mmap, no trimming) makes steps after the first reuse already-touched pages.
/// Same effect as GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=..., but applied
/// from inside the process so users and tests need not set anything. Opt out: PSTAR_DEFAULT_MALLOC=1.
/// </summary>
public static class NativeAllocator
{
    private const int M_TRIM_THRESHOLD = -1;
    private const int M_MMAP_MAX = -4;
    private const int M_MMAP_THRESHOLD = -3;
    private const int DefaultMmapMax = 65536;

    /// <summary>glibc's largest dynamic mmap threshold: blocks of this size or more were always mapped by default.</summary>
    public const int LargeBlockBytes = 32 << 20;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static int _applied;

    /// <summary>Applies the settings once; returns false where they cannot be (not glibc, opted out).</summary>
    public static bool RetainFreedMemory()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("PSTAR_DEFAULT_MALLOC") == "1") return false;
        if (Interlocked.Exchange(ref _applied, 1) == 1) return true;
        try
        {
            return Mallopt(M_MMAP_MAX, 0) == 1 & Mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// Blocks of <see cref="LargeBlockBytes"/> or more get their own mapping again, returned to the system when freed;
    /// smaller ones stay in the heap as before. The chunk engine asks for it, because its process must stay within its
    /// budgets: with the heap alone, a large temporary freed in every backward (a tied embedding's gradient) left its
    /// pages resident while the heap grew by its size at each step (measured: +147 MiB of RSS per step, a 38.6M-element embedding). Large temporaries are
    /// then touched afresh each step; chunk buffers are pooled by their tiers and are not. False where it cannot be applied.
    /// </summary>
    public static bool ReturnLargeBlocks()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("PSTAR_DEFAULT_MALLOC") == "1") return false;
        try
        {
            return Mallopt(M_MMAP_MAX, DefaultMmapMax) == 1 & Mallopt(M_MMAP_THRESHOLD, LargeBlockBytes) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Undoes <see cref="ReturnLargeBlocks"/>: freed large blocks stay in the heap again (tests that measure either way).</summary>
    public static bool KeepLargeBlocks()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("PSTAR_DEFAULT_MALLOC") == "1") return false;
        try
        {
            return Mallopt(M_MMAP_MAX, 0) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Gives the heap's free pages back to the system (after a phase that freed much, such as packing); false where it cannot.</summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return MallocTrim(0) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}
