using System.Runtime.InteropServices;

namespace PatrickStar.Runtime.Cuda;

/// <summary>
/// <see cref="ICudaRuntime"/> over libcudart, loaded at run time. The CUDA libtorch packages TorchSharp uses ship
/// libcudart next to libtorch_cuda.so, and libtorch_cuda.so links it: looking in the loaded libtorch's folder first gives
/// the very runtime (and so the same CUDA context and default streams) libtorch uses. Then TorchSharp's native folders,
/// then the loader's default search path. The library stays loaded for the life of the process.
/// </summary>
public sealed unsafe class CudaRuntimeLibrary : ICudaRuntime
{
    /// <summary>File names tried in each folder, newest CUDA first.</summary>
    public static readonly string[] Names = OperatingSystem.IsWindows()
        ? ["cudart64_13.dll", "cudart64_12.dll", "cudart64_110.dll"]
        : ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"];

    private readonly delegate* unmanaged<int*, int> getDevice;
    private readonly delegate* unmanaged<int, int> setDevice;
    private readonly delegate* unmanaged<nint*, uint, int> streamCreateWithFlags;
    private readonly delegate* unmanaged<nint, int> streamDestroy;
    private readonly delegate* unmanaged<nint*, uint, int> eventCreateWithFlags;
    private readonly delegate* unmanaged<nint, int> eventDestroy;
    private readonly delegate* unmanaged<nint, nint, int> eventRecord;
    private readonly delegate* unmanaged<nint, int> eventQuery;
    private readonly delegate* unmanaged<nint, int> eventSynchronize;
    private readonly delegate* unmanaged<nint, nint, uint, int> streamWaitEvent;
    private readonly delegate* unmanaged<nint, nint, nuint, int, nint, int> memcpyAsync;
    private readonly delegate* unmanaged<int, byte*> getErrorName;
    private readonly delegate* unmanaged<nint, nuint, uint, int> hostRegister;
    private readonly delegate* unmanaged<nint, int> hostUnregister;

    /// <summary>The file loaded.</summary>
    public string Path { get; }

    private CudaRuntimeLibrary(nint lib, string path)
    {
        Path = path;
        getDevice = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "cudaGetDevice");
        setDevice = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "cudaSetDevice");
        streamCreateWithFlags = (delegate* unmanaged<nint*, uint, int>)NativeLibrary.GetExport(lib, "cudaStreamCreateWithFlags");
        streamDestroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "cudaStreamDestroy");
        eventCreateWithFlags = (delegate* unmanaged<nint*, uint, int>)NativeLibrary.GetExport(lib, "cudaEventCreateWithFlags");
        eventDestroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "cudaEventDestroy");
        eventRecord = (delegate* unmanaged<nint, nint, int>)NativeLibrary.GetExport(lib, "cudaEventRecord");
        eventQuery = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "cudaEventQuery");
        eventSynchronize = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "cudaEventSynchronize");
        streamWaitEvent = (delegate* unmanaged<nint, nint, uint, int>)NativeLibrary.GetExport(lib, "cudaStreamWaitEvent");
        memcpyAsync = (delegate* unmanaged<nint, nint, nuint, int, nint, int>)NativeLibrary.GetExport(lib, "cudaMemcpyAsync");
        getErrorName = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(lib, "cudaGetErrorName");
        hostRegister = (delegate* unmanaged<nint, nuint, uint, int>)NativeLibrary.GetExport(lib, "cudaHostRegister");
        hostUnregister = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "cudaHostUnregister");
    }

    /// <summary>Loads libcudart; null with the reason (the folders and names tried) when it cannot.</summary>
    public static CudaRuntimeLibrary? TryLoad(out string reason)
    {
        var tried = new List<string>();
        foreach (string dir in CandidateFolders())
            foreach (string name in Names)
            {
                string file = System.IO.Path.Combine(dir, name);
                if (!File.Exists(file)) continue;
                tried.Add(file);
                if (TryOpen(file, out var runtime, out string? missing)) { reason = ""; return runtime; }
                if (missing is not null) tried[^1] += $" (no {missing})";
            }
        foreach (string name in Names)
        {
            tried.Add(name);
            if (TryOpen(name, out var runtime, out string? missing)) { reason = ""; return runtime; }
            if (missing is not null) tried[^1] += $" (no {missing})";
        }
        reason = $"libcudart could not be loaded (tried {string.Join(", ", tried)})";
        return null;
    }

    private static bool TryOpen(string nameOrPath, out CudaRuntimeLibrary? runtime, out string? missingExport)
    {
        runtime = null;
        missingExport = null;
        if (!NativeLibrary.TryLoad(nameOrPath, out nint lib)) return false;
        try
        {
            runtime = new CudaRuntimeLibrary(lib, nameOrPath);
            return true;
        }
        catch (EntryPointNotFoundException e)
        {
            missingExport = e.Message;
            return false;
        }
    }

    /// <summary>The folders of the loaded libtorch libraries (from /proc/self/maps), then TorchSharp's native folders.</summary>
    private static IEnumerable<string> CandidateFolders()
    {
        var folders = new List<string>();
        if (OperatingSystem.IsLinux() && File.Exists("/proc/self/maps"))
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash < 0) continue;
                string path = line[slash..];
                string file = System.IO.Path.GetFileName(path);
                if (file.StartsWith("libtorch_cuda", StringComparison.Ordinal) || file.StartsWith("libtorch.so", StringComparison.Ordinal)
                    || file.StartsWith("libc10_cuda", StringComparison.Ordinal))
                    folders.Add(System.IO.Path.GetDirectoryName(path)!);
            }
        }
        string baseDir = AppContext.BaseDirectory;
        folders.Add(baseDir);
        folders.Add(System.IO.Path.Combine(baseDir, "runtimes", OperatingSystem.IsWindows() ? "win-x64" : "linux-x64", "native"));
        return folders.Distinct();
    }

    public int GetDevice(out int device)
    {
        device = 0;
        fixed (int* d = &device) return getDevice(d);
    }

    public int SetDevice(int device) => setDevice(device);

    public int StreamCreate(out nint stream, uint flags)
    {
        stream = 0;
        fixed (nint* s = &stream) return streamCreateWithFlags(s, flags);
    }

    public int StreamDestroy(nint stream) => streamDestroy(stream);

    public int EventCreate(out nint cudaEvent, uint flags)
    {
        cudaEvent = 0;
        fixed (nint* ev = &cudaEvent) return eventCreateWithFlags(ev, flags);
    }

    public int EventDestroy(nint cudaEvent) => eventDestroy(cudaEvent);
    public int EventRecord(nint cudaEvent, nint stream) => eventRecord(cudaEvent, stream);
    public int EventQuery(nint cudaEvent) => eventQuery(cudaEvent);
    public int EventSynchronize(nint cudaEvent) => eventSynchronize(cudaEvent);
    public int StreamWaitEvent(nint stream, nint cudaEvent, uint flags) => streamWaitEvent(stream, cudaEvent, flags);
    public int MemcpyAsync(nint destination, nint source, nuint bytes, int kind, nint stream) => memcpyAsync(destination, source, bytes, kind, stream);
    public int HostRegister(nint pointer, nuint bytes, uint flags) => hostRegister(pointer, bytes, flags);
    public int HostUnregister(nint pointer) => hostUnregister(pointer);
    public string ErrorName(int error) => Marshal.PtrToStringAnsi((nint)getErrorName(error)) ?? $"cudaError {error}";
}
