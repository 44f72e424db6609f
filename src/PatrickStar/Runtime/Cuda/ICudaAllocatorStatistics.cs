namespace PatrickStar.Runtime.Cuda;

/// <summary>
/// What libtorch's CUDA caching allocator and the driver say about one device's memory. TorchSharp 0.107 exposes none of
/// it, so a small native helper of ours (libPatrickStarCuda, built on the GPU machine against torch's headers) does; on a
/// CPU build the library is absent and <see cref="Available"/> is false. The engine's non-model tracer reads these on CUDA
/// the way it reads the process's native allocations on a CPU device. Tests use a fake.
/// </summary>
public interface ICudaAllocatorStatistics
{
    /// <summary>True when the native helper was found and reports a CUDA device.</summary>
    bool Available { get; }

    /// <summary>Bytes the caching allocator has handed out on <paramref name="device"/> now (allocated_bytes.all.current).</summary>
    long AllocatedBytes(int device);

    /// <summary>The most <see cref="AllocatedBytes"/> has been since the last <see cref="ResetPeak"/>.</summary>
    long PeakAllocatedBytes(int device);

    /// <summary>Starts a new peak from the current allocated bytes.</summary>
    void ResetPeak(int device);

    /// <summary>Bytes reserved from the driver by the caching allocator (reserved_bytes.all.current), cached blocks included.</summary>
    long ReservedBytes(int device);

    /// <summary>cudaMemGetInfo: free and total bytes of the device as the driver sees them (other processes included).</summary>
    (long Free, long Total) MemoryInfo(int device);
}
