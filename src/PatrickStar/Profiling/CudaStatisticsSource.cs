using PatrickStar.Runtime.Cuda;

namespace PatrickStar.Profiling;

/// <summary>Where the engine gets the CUDA caching allocator's statistics (the non-model tracer, the automatic device budget).</summary>
public static class CudaStatisticsSource
{
    /// <summary>The process's statistics, or null when there are none; tests pass their own fakes instead of changing this.</summary>
    public static ICudaAllocatorStatistics? Default() => Factory();

    // MERGE(cuda+native): point this at the native helper's factory, e.g. () => CudaAllocatorStatistics.<its static factory>().
    private static readonly Func<ICudaAllocatorStatistics?> Factory = () => null;
}
