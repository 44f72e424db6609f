using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>A copy started by <see cref="IAsyncChunkCopy.Start"/>: neither tensor may be used until <see cref="Wait"/> returned.</summary>
public interface IChunkCopyCompletion
{
    /// <summary>True once the destination holds the source's values (false when that cannot be known without waiting).</summary>
    bool IsCompleted { get; }

    /// <summary>Blocks until the copy is complete; throws what the copy threw.</summary>
    void Wait();

    /// <summary>
    /// Before the destination's first use: orders every later use on the compute device after the copy. On CUDA the
    /// compute stream waits on the copy's event and the host does not block; elsewhere this is <see cref="Wait"/>.
    /// </summary>
    void BeforeUse() => Wait();

    /// <summary>True once the copy no longer reads its source, which may then be reused (after <see cref="BeforeUse"/> a CUDA copy from pinned memory may still read it).</summary>
    bool SourceRead => IsCompleted;
}

/// <summary>The copy engine of the chunk read-ahead: copies a host chunk into a device buffer while the caller computes.</summary>
public interface IAsyncChunkCopy : IDisposable
{
    /// <summary>Starts copying <paramref name="source"/> into <paramref name="destination"/> (same dtype and size).</summary>
    IChunkCopyCompletion Start(Tensor destination, Tensor source);
}

/// <summary>Picks the copy engine for a compute device.</summary>
public static class AsyncChunkCopy
{
    private static int noticed;

    /// <summary>
    /// CUDA: a side stream and events (<see cref="CudaChunkCopy"/>), or, when libcudart cannot be loaded, copies on the
    /// current stream (<see cref="CudaCurrentStreamChunkCopy"/>) after a one-line notice (once per process); any other
    /// device: a copy thread (<see cref="WorkerThreadChunkCopy"/>).
    /// </summary>
    /// <param name="loadRuntime">Loads the CUDA runtime (null and the reason when it cannot); by default libcudart.</param>
    /// <param name="notice">Where the fallback notice goes; by default standard error.</param>
    /// <param name="isPinned">Whether a host source is page-locked (a copy from it is still reading it after the call returns);
    /// by default <c>Tensor.is_pinned</c>. The engine adds the host tier's registered buffers (<see cref="Memory.HostPinning"/>).</param>
    public static IAsyncChunkCopy For(Device device, Func<(Runtime.Cuda.ICudaRuntime? Runtime, string Reason)>? loadRuntime = null,
        Action<string>? notice = null, Func<Tensor, bool>? isPinned = null)
    {
        if (device.type != DeviceType.CUDA) return new WorkerThreadChunkCopy();
        var (runtime, reason) = (loadRuntime ?? LoadCudaRuntime)();
        if (runtime is not null) return new CudaChunkCopy(device, runtime, isPinned);
        if (notice is not null || Interlocked.Exchange(ref noticed, 1) == 0)
            (notice ?? Console.Error.WriteLine)($"notice: chunk read-ahead copies run on the compute stream, not a side stream: {reason}.");
        return new CudaCurrentStreamChunkCopy(device, readsAfterReturn: isPinned);
    }

    /// <summary>libcudart, loaded once per process (null when it cannot be).</summary>
    public static Runtime.Cuda.ICudaRuntime? DefaultCudaRuntime() => CudaRuntime.Value.Item1;

    private static readonly Lazy<(Runtime.Cuda.ICudaRuntime?, string)> CudaRuntime = new(() =>
    {
        var runtime = Runtime.Cuda.CudaRuntimeLibrary.TryLoad(out string reason);
        return (runtime, reason);
    });

    private static (Runtime.Cuda.ICudaRuntime?, string) LoadCudaRuntime() => CudaRuntime.Value;
}
