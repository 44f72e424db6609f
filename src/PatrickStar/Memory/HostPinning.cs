using PatrickStar.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Memory;

/// <summary>
/// Page-locks the host tier's buffers when the compute device is a GPU (cudaHostRegister), so that chunk copies to and
/// from the device are DMA transfers that run beside compute instead of being staged by the driver. Registration works
/// on whole pages, and two buffers sharing a page could not both be registered, so pinned buffers are page-aligned and own
/// their last page (<see cref="TierMemory"/> allocates them so). libtorch's own pin_memory would copy into its caching
/// host allocator, which rounds sizes up to powers of two and keeps freed blocks: the host budget would not hold.
/// A registration that fails leaves that buffer, and every later one, pageable, after one warning.
/// </summary>
public sealed class HostPinning(ICudaRuntime runtime, Action<string>? warning = null)
{
    private readonly Dictionary<nint, long> registered = new();
    private readonly object gate = new();
    private bool failed;

    /// <summary>The unit of registration: buffers are aligned to it and span whole multiples of it.</summary>
    public static int PageSize => Environment.SystemPageSize;

    /// <summary>Host buffers registered now.</summary>
    public int Registered
    {
        get { lock (gate) return registered.Count; }
    }

    /// <summary>True once a registration failed (buffers are pageable from then on).</summary>
    public bool Failed => failed;

    /// <summary>
    /// Pinning for the host tier of an engine computing on <paramref name="device"/>: null unless it is a CUDA device and
    /// the CUDA runtime loads (<paramref name="runtime"/> null or returning null: pageable buffers).
    /// </summary>
    public static HostPinning? For(Device device, Func<ICudaRuntime?>? runtime, Action<string>? warning = null) =>
        device.type == DeviceType.CUDA && runtime?.Invoke() is { } r ? new HostPinning(r, warning) : null;

    /// <summary>Registers the page-aligned range [<paramref name="address"/>, +<paramref name="bytes"/>); false (pageable) when it fails or failed before.</summary>
    public bool Register(nint address, long bytes)
    {
        int error;
        lock (gate)
        {
            if (failed) return false;
            error = runtime.HostRegister(address, (nuint)bytes, CudaConstants.HostRegisterDefault);
            if (error == CudaConstants.Success)
            {
                registered[address] = bytes;
                return true;
            }
            failed = true;
        }
        (warning ?? (line => Console.Error.WriteLine($"warning: {line}")))(
            $"host chunk buffers stay pageable: cudaHostRegister of {bytes:N0} bytes failed ({SafeName(runtime, error)}); " +
            "chunk copies to the GPU are then staged by the driver and do not overlap compute. Check the locked-memory limit (ulimit -l).");
        return false;
    }

    private static string SafeName(ICudaRuntime runtime, int error)
    {
        try { return $"{runtime.ErrorName(error)}, error {error}"; }
        catch (Exception e) when (e is not OutOfMemoryException) { return $"error {error}"; }
    }

    /// <summary>Unregisters the buffer starting at <paramref name="address"/> before it is freed; nothing when it was not registered.</summary>
    public void Unregister(nint address)
    {
        lock (gate)
            if (registered.Remove(address)) runtime.HostUnregister(address); // a failure here leaves nothing to undo
    }

    /// <summary>Unregisters every buffer still registered (the tier is going away).</summary>
    public void UnregisterAll()
    {
        lock (gate)
        {
            foreach (nint address in registered.Keys) runtime.HostUnregister(address);
            registered.Clear();
        }
    }

    /// <summary>True when <paramref name="t"/>'s data lies in a registered buffer (a copy from it is asynchronous).</summary>
    public bool Covers(Tensor t)
    {
        if (t.device_type != DeviceType.CPU) return false;
        long start = (long)Runtime.TensorMemory.DataPointer(t);
        long end = start + t.numel() * Runtime.TensorMemory.ElementSize(t.dtype);
        lock (gate)
            foreach (var (address, bytes) in registered)
                if (start >= address && end <= address + bytes) return true;
        return false;
    }
}
