using System.Diagnostics;
using PatrickStar.Runtime.Cuda;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// A self-check of the CUDA read-ahead (`pstar cuda-check`): one host-to-device copy through <see cref="CudaChunkCopy"/>
/// as the read-ahead issues it, then a read of the destination on the compute stream, which must see the copied values
/// because that stream waits on the copy's event. The host time to issue the copy and order compute after it should be
/// far below the copy's own time: the host does not wait for the copy.
/// </summary>
public static class CudaCopyCheck
{
    /// <param name="IssueMilliseconds">Host time of Start + BeforeUse.</param>
    /// <param name="ReadBackMilliseconds">Host time from then until the values were read back (the copy, then a device-to-host copy).</param>
    public sealed record Result(long Bytes, bool Pinned, bool Equal, double IssueMilliseconds, double ReadBackMilliseconds)
    {
        public override string ToString() =>
            $"side-stream copy of {Profiling.Bytes.Format(Bytes)} from {(Pinned ? "pinned" : "pageable")} host memory: issued and ordered before compute in " +
            $"{IssueMilliseconds:0.000} ms on the host; read back on the compute stream after {ReadBackMilliseconds:0.000} ms: " +
            (Equal ? "values equal" : "VALUES DIFFER");
    }

    public static Result Run(ICudaRuntime runtime, Device device, long bytes, bool pinned)
    {
        using var scope = NewDisposeScope();
        long n = Math.Max(1, bytes / 4);
        var source = rand(n, dtype: ScalarType.Float32);
        if (pinned) source = source.pin_memory();
        var destination = zeros(n, dtype: ScalarType.Float32, device: device);
        using var copier = new CudaChunkCopy(device, runtime);
        long start = Stopwatch.GetTimestamp();
        var copy = copier.Start(destination, source);
        copy.BeforeUse();
        double issue = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        bool equal;
        using (no_grad())
        using (var back = destination.cpu())
        using (var same = back.eq(source).all())
            equal = same.item<bool>();
        double readBack = Stopwatch.GetElapsedTime(start).TotalMilliseconds - issue;
        copy.Wait();
        return new Result(n * 4, pinned, equal, issue, readBack);
    }
}
