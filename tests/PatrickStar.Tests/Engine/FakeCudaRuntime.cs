using PatrickStar.Runtime.Cuda;

namespace PatrickStar.Tests.Engine;

/// <summary>
/// A CUDA runtime for tests on a machine without a GPU, over host memory. The legacy default stream stands for the host's
/// own compute, which runs at once: work recorded there is complete immediately. Any other stream queues its work, which
/// runs only when the test calls <see cref="Progress"/>, when an event is synchronized, or (if <see cref="RunOnComputeWait"/>)
/// when the compute stream waits on one of its events. So a use of the destination that was not ordered after the copy
/// sees the buffer's old contents. Every call is logged; <see cref="FailWith"/> makes one call return an error.
/// </summary>
public sealed class FakeCudaRuntime : ICudaRuntime
{
    private readonly Dictionary<nint, Queue<(Action Run, string What)>> streams = new();
    private readonly Dictionary<nint, bool> eventDone = new();
    private nint next = 0x100;

    public List<string> Log { get; } = new();
    public bool RunOnComputeWait { get; set; } = true;
    public int CurrentDevice { get; private set; }

    /// <summary>The call (e.g. "MemcpyAsync") that returns <see cref="FailCode"/> instead of running.</summary>
    public string? FailWith { get; set; }
    public int FailCode { get; set; } = 1;

    public int Count(string call) => Log.Count(l => l.StartsWith(call, StringComparison.Ordinal));
    public int LiveStreams => streams.Count;
    public int LiveEvents => eventDone.Count;

    private string Name(nint stream) => stream == CudaConstants.StreamLegacy ? "compute" : "side";

    private bool Fails(string call, string entry)
    {
        Log.Add(entry);
        return FailWith == call;
    }

    public int GetDevice(out int device)
    {
        device = CurrentDevice;
        return 0;
    }

    public int SetDevice(int device)
    {
        Log.Add($"SetDevice {device}");
        CurrentDevice = device;
        return 0;
    }

    public int StreamCreate(out nint stream, uint flags)
    {
        stream = next++;
        if (Fails("StreamCreate", $"StreamCreate flags {flags}")) return FailCode;
        streams[stream] = new();
        return 0;
    }

    public int StreamDestroy(nint stream)
    {
        Log.Add("StreamDestroy");
        streams.Remove(stream);
        return 0;
    }

    public int EventCreate(out nint cudaEvent, uint flags)
    {
        cudaEvent = next++;
        if (Fails("EventCreate", $"EventCreate flags {flags}")) return FailCode;
        eventDone[cudaEvent] = true;
        return 0;
    }

    public int EventDestroy(nint cudaEvent)
    {
        Log.Add("EventDestroy");
        eventDone.Remove(cudaEvent);
        return 0;
    }

    public int EventRecord(nint cudaEvent, nint stream)
    {
        if (Fails("EventRecord", $"EventRecord on {Name(stream)}")) return FailCode;
        if (stream == CudaConstants.StreamLegacy) eventDone[cudaEvent] = true;
        else
        {
            eventDone[cudaEvent] = false;
            streams[stream].Enqueue((() => eventDone[cudaEvent] = true, "record"));
        }
        return 0;
    }

    public int EventQuery(nint cudaEvent)
    {
        if (Fails("EventQuery", "EventQuery")) return FailCode;
        return eventDone[cudaEvent] ? 0 : CudaConstants.ErrorNotReady;
    }

    public int EventSynchronize(nint cudaEvent)
    {
        if (Fails("EventSynchronize", "EventSynchronize")) return FailCode;
        RunUntil(cudaEvent);
        return 0;
    }

    public int StreamWaitEvent(nint stream, nint cudaEvent, uint flags)
    {
        if (Fails("StreamWaitEvent", $"StreamWaitEvent {Name(stream)} waits")) return FailCode;
        if (stream == CudaConstants.StreamLegacy && RunOnComputeWait) RunUntil(cudaEvent);
        return 0;
    }

    public unsafe int MemcpyAsync(nint destination, nint source, nuint bytes, int kind, nint stream)
    {
        if (Fails("MemcpyAsync", $"MemcpyAsync kind {kind} on {Name(stream)}")) return FailCode;
        streams[stream].Enqueue((() => Buffer.MemoryCopy((void*)source, (void*)destination, (long)bytes, (long)bytes), "copy"));
        return 0;
    }

    /// <summary>Host ranges registered now (address, bytes).</summary>
    public Dictionary<nint, nuint> Registered { get; } = new();

    public int HostRegister(nint pointer, nuint bytes, uint flags)
    {
        if (Fails("HostRegister", $"HostRegister {bytes}")) return FailCode;
        if (!Registered.TryAdd(pointer, bytes)) return 712; // cudaErrorHostMemoryAlreadyRegistered
        return 0;
    }

    public int HostUnregister(nint pointer)
    {
        if (Fails("HostUnregister", "HostUnregister")) return FailCode;
        return Registered.Remove(pointer) ? 0 : 713; // cudaErrorHostMemoryNotRegistered
    }

    public string ErrorName(int error) => error switch { 1 => "cudaErrorInvalidValue", 700 => "cudaErrorIllegalAddress", _ => "cudaErrorUnknown" };

    /// <summary>Runs all queued work (the device catches up).</summary>
    public void Progress()
    {
        foreach (var queue in streams.Values)
            while (queue.TryDequeue(out var work)) work.Run();
    }

    private void RunUntil(nint cudaEvent)
    {
        foreach (var queue in streams.Values)
            while (!eventDone[cudaEvent] && queue.TryDequeue(out var work)) work.Run();
    }
}
