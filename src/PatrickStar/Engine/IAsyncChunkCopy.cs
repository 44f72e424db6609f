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
    /// <summary>CUDA: stream-ordered copies (<see cref="CudaChunkCopy"/>); any other device: a copy thread (<see cref="WorkerThreadChunkCopy"/>).</summary>
    public static IAsyncChunkCopy For(Device device) =>
        device.type == DeviceType.CUDA ? new CudaChunkCopy(device) : new WorkerThreadChunkCopy();
}
