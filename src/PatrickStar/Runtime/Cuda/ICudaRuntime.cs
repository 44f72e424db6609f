namespace PatrickStar.Runtime.Cuda;

/// <summary>
/// The few CUDA runtime entry points the read-ahead needs (TorchSharp 0.107 exposes no streams or events), shaped like
/// the C API: each returns a cudaError_t (0 = cudaSuccess) and handles are opaque pointers. <see cref="CudaRuntimeLibrary"/>
/// calls libcudart; tests use a fake. Callers check results with <see cref="CudaCheck"/>.
/// </summary>
public interface ICudaRuntime
{
    int GetDevice(out int device);
    int SetDevice(int device);
    /// <summary>cudaStreamCreateWithFlags.</summary>
    int StreamCreate(out nint stream, uint flags);
    int StreamDestroy(nint stream);
    /// <summary>cudaEventCreateWithFlags.</summary>
    int EventCreate(out nint cudaEvent, uint flags);
    int EventDestroy(nint cudaEvent);
    int EventRecord(nint cudaEvent, nint stream);
    /// <summary>cudaEventQuery: 0 when the work before the record is done, <see cref="CudaConstants.ErrorNotReady"/> while it runs.</summary>
    int EventQuery(nint cudaEvent);
    int EventSynchronize(nint cudaEvent);
    int StreamWaitEvent(nint stream, nint cudaEvent, uint flags);
    /// <summary>cudaMemcpyAsync.</summary>
    int MemcpyAsync(nint destination, nint source, nuint bytes, int kind, nint stream);
    /// <summary>cudaHostRegister: page-locks existing host memory, so that copies from and to it run asynchronously (DMA).</summary>
    int HostRegister(nint pointer, nuint bytes, uint flags);
    /// <summary>cudaHostUnregister: makes memory registered by <see cref="HostRegister"/> pageable again (before it is freed).</summary>
    int HostUnregister(nint pointer);
    /// <summary>cudaGetErrorName: "cudaErrorInvalidValue" for 1.</summary>
    string ErrorName(int error);
}

/// <summary>Values from the CUDA runtime headers (driver_types.h); stable across CUDA 11 and 12.</summary>
public static class CudaConstants
{
    public const int Success = 0;
    public const int ErrorNotReady = 600;
    /// <summary>cudaStreamNonBlocking: the stream does not synchronize with the legacy default stream.</summary>
    public const uint StreamNonBlocking = 0x01;
    /// <summary>cudaEventDisableTiming: the cheapest event, for ordering only.</summary>
    public const uint EventDisableTiming = 0x02;
    /// <summary>cudaHostRegisterDefault.</summary>
    public const uint HostRegisterDefault = 0;
    /// <summary>cudaMemcpyHostToDevice.</summary>
    public const int MemcpyHostToDevice = 1;
    /// <summary>
    /// cudaStreamLegacy, the legacy default stream, named explicitly so that the handle means the same whether or not this
    /// runtime was built for per-thread default streams.
    /// </summary>
    public static readonly nint StreamLegacy = 1;
}

/// <summary>A CUDA runtime call failed; the message names the call and the error (cudaGetErrorName) and its code.</summary>
public sealed class CudaException(string call, int error, string name)
    : Exception($"CUDA call {call} failed: {name} (error {error}).")
{
    public string Call { get; } = call;
    public int Error { get; } = error;
    public string ErrorName { get; } = name;
}

/// <summary>Turns CUDA error codes into <see cref="CudaException"/>s.</summary>
public static class CudaCheck
{
    public static void Ok(this ICudaRuntime runtime, int error, string call)
    {
        if (error != CudaConstants.Success) throw new CudaException(call, error, SafeName(runtime, error));
    }

    private static string SafeName(ICudaRuntime runtime, int error)
    {
        try
        {
            return runtime.ErrorName(error) is { Length: > 0 } name ? name : $"cudaError {error}";
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return $"cudaError {error}";
        }
    }
}
