using PatrickStar.Runtime.Cuda;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The read-ahead's copies on a CUDA device: host-to-device copies on a side stream, ordered against compute by events,
/// through the CUDA runtime's C API (<see cref="ICudaRuntime"/>; TorchSharp 0.107 has no streams or events).
/// <para>
/// The compute stream is libtorch's current stream. TorchSharp never sets one, so it is the default stream, which
/// libtorch launches on as stream 0; PyTorch is not built for per-thread default streams, so that is the legacy default
/// stream, named here as <see cref="CudaConstants.StreamLegacy"/>. The side stream is created non-blocking, or the legacy
/// stream's implicit synchronization would serialize the copy with compute.
/// </para>
/// <para>
/// Per copy: an event recorded on the compute stream, which the side stream waits for (the destination may be a pooled
/// buffer that kernels queued earlier still read); the copy on the side stream; an event recorded after it. Before the
/// chunk's first use (<see cref="IChunkCopyCompletion.BeforeUse"/>) the compute stream waits on that event: the host
/// never blocks on the fetch path. Both tensors are held (own handles on their storage) until the event is seen complete,
/// so neither is freed under the copy; a cancelled copy (<see cref="IChunkCopyCompletion.Wait"/>) synchronizes its event,
/// then releases them. A pinned source is still read after the call returns (<see cref="IChunkCopyCompletion.SourceRead"/>);
/// a pageable one was staged by CUDA before cudaMemcpyAsync returned.
/// </para>
/// </summary>
public sealed class CudaChunkCopy : IAsyncChunkCopy
{
    private readonly ICudaRuntime runtime;
    private readonly int deviceIndex;
    private readonly nint sideStream;
    private readonly nint computeReady;
    private readonly Func<Tensor, bool> isPinned;
    private readonly Stack<nint> freeEvents = new();
    private readonly List<Completion> inFlight = new();
    private bool disposed;

    /// <param name="isPinned">Whether a source is pinned host memory; by default <c>Tensor.is_pinned</c>.</param>
    public CudaChunkCopy(Device device, ICudaRuntime runtime, Func<Tensor, bool>? isPinned = null)
    {
        Device = device;
        this.runtime = runtime;
        this.isPinned = isPinned ?? (t => t.is_pinned());
        if (device.index >= 0) deviceIndex = device.index;
        else runtime.Ok(runtime.GetDevice(out deviceIndex), "cudaGetDevice");
        using var scope = OnDevice();
        runtime.Ok(runtime.StreamCreate(out sideStream, CudaConstants.StreamNonBlocking), "cudaStreamCreateWithFlags");
        int error = runtime.EventCreate(out computeReady, CudaConstants.EventDisableTiming);
        if (error != CudaConstants.Success) runtime.StreamDestroy(sideStream);
        runtime.Ok(error, "cudaEventCreateWithFlags");
    }

    public Device Device { get; }

    /// <summary>Copies whose tensors are still held (their event not yet seen complete).</summary>
    public int TensorsHeld => inFlight.Count;

    public IChunkCopyCompletion Start(Tensor destination, Tensor source)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (destination.dtype != source.dtype || destination.numel() != source.numel() || !destination.is_contiguous() || !source.is_contiguous())
            throw new ArgumentException($"a chunk copy needs two contiguous tensors of one dtype and size; got {destination.dtype} x {destination.numel()} " +
                                        $"from {source.dtype} x {source.numel()}.");
        ReleaseCompleted();
        long bytes = source.numel() * Runtime.TensorMemory.ElementSize(source.dtype);
        bool pinned = isPinned(source);
        nint done = RentEvent();
        // Own handles: the caller may dispose or recycle its tensors; the storage stays until the copy is seen done.
        var completion = new Completion(this, done, destination.detach(), source.detach(), pinned);
        using var scope = OnDevice();
        try
        {
            runtime.Ok(runtime.EventRecord(computeReady, CudaConstants.StreamLegacy), "cudaEventRecord");
            runtime.Ok(runtime.StreamWaitEvent(sideStream, computeReady, 0), "cudaStreamWaitEvent");
        }
        catch
        {
            completion.Abandon(); // nothing was queued: the tensors and the event go back at once
            throw;
        }
        // From here a failure may leave the copy queued: its tensors are left to the finalizer rather than freed under it.
        runtime.Ok(runtime.MemcpyAsync(Runtime.TensorMemory.DataPointer(destination), Runtime.TensorMemory.DataPointer(source), (nuint)bytes,
            CudaConstants.MemcpyHostToDevice, sideStream), "cudaMemcpyAsync");
        runtime.Ok(runtime.EventRecord(done, sideStream), "cudaEventRecord");
        inFlight.Add(completion);
        return completion;
    }

    /// <summary>Releases the tensors of copies whose event is complete.</summary>
    private void ReleaseCompleted()
    {
        for (int i = inFlight.Count - 1; i >= 0; i--) _ = inFlight[i].IsCompleted;
    }

    private nint RentEvent()
    {
        if (freeEvents.TryPop(out nint e)) return e;
        using var scope = OnDevice();
        runtime.Ok(runtime.EventCreate(out e, CudaConstants.EventDisableTiming), "cudaEventCreateWithFlags");
        return e;
    }

    /// <summary>Waits for every copy in flight, then destroys the stream and events.</summary>
    public void Dispose()
    {
        if (disposed) return;
        try
        {
            while (inFlight.Count > 0) inFlight[^1].Wait();
        }
        finally
        {
            disposed = true;
            using var scope = OnDevice();
            // Errors are not raised here: a run stopping on a CUDA error may find the context already broken.
            foreach (nint e in freeEvents) runtime.EventDestroy(e);
            freeEvents.Clear();
            runtime.EventDestroy(computeReady);
            runtime.StreamDestroy(sideStream);
        }
    }

    private DeviceScope OnDevice() => new(runtime, deviceIndex);

    /// <summary>Makes the copier's device current for CUDA calls (events and streams belong to one device) and restores the previous one.</summary>
    private readonly struct DeviceScope : IDisposable
    {
        private readonly ICudaRuntime runtime;
        private readonly int previous, wanted;

        public DeviceScope(ICudaRuntime runtime, int device)
        {
            this.runtime = runtime;
            wanted = device;
            runtime.Ok(runtime.GetDevice(out previous), "cudaGetDevice");
            if (previous != wanted) runtime.Ok(runtime.SetDevice(wanted), "cudaSetDevice");
        }

        public void Dispose()
        {
            if (previous != wanted) runtime.SetDevice(previous);
        }
    }

    private sealed class Completion(CudaChunkCopy owner, nint done, Tensor destination, Tensor source, bool pinned) : IChunkCopyCompletion
    {
        private bool released;

        public bool IsCompleted
        {
            get
            {
                if (released) return true;
                int state = owner.runtime.EventQuery(done);
                if (state == CudaConstants.ErrorNotReady) return false;
                owner.runtime.Ok(state, "cudaEventQuery");
                Release();
                return true;
            }
        }

        public bool SourceRead => !pinned || IsCompleted;

        public void BeforeUse()
        {
            if (released) return;
            using var scope = owner.OnDevice();
            owner.runtime.Ok(owner.runtime.StreamWaitEvent(CudaConstants.StreamLegacy, done, 0), "cudaStreamWaitEvent");
        }

        public void Wait()
        {
            if (released) return;
            using (owner.OnDevice()) owner.runtime.Ok(owner.runtime.EventSynchronize(done), "cudaEventSynchronize");
            Release();
        }

        public void Abandon() => Release();

        private void Release()
        {
            released = true;
            destination.Dispose();
            source.Dispose();
            owner.inFlight.Remove(this); // absent when abandoned before it was added
            owner.freeEvents.Push(done);
        }
    }
}
