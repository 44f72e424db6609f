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

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

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
}
