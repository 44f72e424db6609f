using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The read-ahead's copies on a CUDA device when libcudart cannot be loaded (see <see cref="CudaChunkCopy"/> for the side
/// stream): the copy is issued <c>non_blocking</c> on libtorch's current stream, where every kernel queued after it sees
/// it complete (stream order). The host may reuse the source only once the copy has read it: from pageable memory CUDA
/// has staged it when the call returns; from pinned memory the copy is still in flight, and
/// <see cref="IChunkCopyCompletion.Wait"/> synchronizes the device.
/// </summary>
/// <param name="copy">Issues the copy (destination, source); by default <c>copy_(source, non_blocking: true)</c>.</param>
/// <param name="synchronize">Waits for the device; by default <c>torch.cuda.synchronize</c>.</param>
/// <param name="readsAfterReturn">Whether the copy still reads the source after the call returned; by default: the source is pinned.</param>
public sealed class CudaCurrentStreamChunkCopy(Device device, Action<Tensor, Tensor>? copy = null, Action<Device>? synchronize = null,
    Func<Tensor, bool>? readsAfterReturn = null) : IAsyncChunkCopy
{
    private readonly Action<Tensor, Tensor> issue = copy ?? IssueNonBlocking;

    private readonly Action<Device> waitForDevice = synchronize ?? (d => cuda.synchronize(d));
    private readonly Func<Tensor, bool> inFlightAfterIssue = readsAfterReturn ?? (source => source.is_pinned());

    public Device Device => device;

    public IChunkCopyCompletion Start(Tensor destination, Tensor source)
    {
        bool inFlight = inFlightAfterIssue(source);
        issue(destination, source);
        return new Completion(inFlight ? () => waitForDevice(device) : null);
    }

    public void Dispose() { }

    private static void IssueNonBlocking(Tensor destination, Tensor source)
    {
        using (no_grad()) destination.copy_(source, nonBlocking: true);
    }

    private sealed class Completion(Action? synchronize) : IChunkCopyCompletion
    {
        private Action? pending = synchronize;

        public bool IsCompleted => pending is null;

        public void Wait()
        {
            pending?.Invoke();
            pending = null;
        }
    }
}
