using PatrickStar.Runtime.Cuda;

namespace PatrickStar.Profiling;

/// <summary>Where the engine gets the CUDA caching allocator's statistics (the non-model tracer, the automatic device budget).</summary>
public static class CudaStatisticsSource
{
    /// <summary>The process's statistics, or null when there are none; tests pass their own fakes instead of changing this.</summary>
    public static ICudaAllocatorStatistics? Default() => Factory();

    // Loaded once, on first use (only CUDA paths ask): libPatrickStarCuda from $PSTAR_NATIVE_DIR, the app's folder or the
    // default search path; where it is absent the instance says so (Available false, with the reason).
    private static readonly Lazy<ICudaAllocatorStatistics?> Loaded = new(() => CudaAllocatorStatistics.Load());
    private static readonly Func<ICudaAllocatorStatistics?> Factory = () => Loaded.Value;
}
