using System.Runtime.InteropServices;
using System.Text;

namespace PatrickStar.Runtime.Cuda;

/// <summary>
/// <see cref="ICudaAllocatorStatistics"/> over libPatrickStarCuda (native/PatrickStarCuda, built by gpu/build-native.sh
/// against the torch the run uses). Looked for in <c>$PSTAR_NATIVE_DIR</c>, then the app's folder, then the loader's
/// search path. Where it is absent (every CPU build) or sees no CUDA device, <see cref="Available"/> is false and
/// <see cref="Status"/> says why; construction never throws. Each native function returns 0 or an error code, with the
/// message from <c>pstar_cuda_last_error</c>.
/// </summary>
public sealed unsafe class CudaAllocatorStatistics : ICudaAllocatorStatistics
{
    public const string LibraryFileName = "libPatrickStarCuda.so";
    /// <summary>The folder gpu/build-native.sh built into (its --out); the env.sh it writes sets it.</summary>
    public const string DirectoryVariable = "PSTAR_NATIVE_DIR";

    private readonly delegate* unmanaged<byte*, int, int> lastError;
    private readonly delegate* unmanaged<int*, int> deviceCount;
    private readonly delegate* unmanaged<int, long*, int> allocatedBytes;
    private readonly delegate* unmanaged<int, long*, int> peakAllocatedBytes;
    private readonly delegate* unmanaged<int, int> resetPeak;
    private readonly delegate* unmanaged<int, long*, int> reservedBytes;
    private readonly delegate* unmanaged<int, long*, long*, int> memGetInfo;
    private readonly delegate* unmanaged<int, nint*, int> currentStream;

    public bool Available { get; }

    /// <summary>The library loaded and the number of devices, or why the statistics are not available.</summary>
    public string Status { get; }

    /// <summary>CUDA devices the library sees (0 when not available).</summary>
    public int DeviceCount { get; }

    private CudaAllocatorStatistics(string status) => Status = status;

    private CudaAllocatorStatistics(nint lib, string path)
    {
        lastError = (delegate* unmanaged<byte*, int, int>)NativeLibrary.GetExport(lib, "pstar_cuda_last_error");
        deviceCount = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_device_count");
        allocatedBytes = (delegate* unmanaged<int, long*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_allocated_bytes");
        peakAllocatedBytes = (delegate* unmanaged<int, long*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_peak_allocated_bytes");
        resetPeak = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "pstar_cuda_reset_peak");
        reservedBytes = (delegate* unmanaged<int, long*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_reserved_bytes");
        memGetInfo = (delegate* unmanaged<int, long*, long*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_mem_get_info");
        currentStream = (delegate* unmanaged<int, nint*, int>)NativeLibrary.GetExport(lib, "pstar_cuda_current_stream");

        int count = 0;
        int code = deviceCount(&count);
        if (code != 0)
            Status = $"{path} could not count CUDA devices: {LastError()} (code {code})";
        else if (count == 0)
            Status = $"{path} loaded, but no CUDA device is visible";
        else
        {
            DeviceCount = count;
            Available = true;
            Status = $"{path}, {count} CUDA device(s)";
        }
    }

    /// <summary>Loads from <c>$PSTAR_NATIVE_DIR</c>, the app's folder, then the default search path.</summary>
    public static CudaAllocatorStatistics Load() =>
        Load(Environment.GetEnvironmentVariable(DirectoryVariable), AppContext.BaseDirectory, searchDefault: true);

    /// <summary>Loads from <paramref name="nativeDir"/> (when set), then <paramref name="appDir"/>, then (if asked) by name.</summary>
    public static CudaAllocatorStatistics Load(string? nativeDir, string appDir, bool searchDefault)
    {
        var tried = new List<string>();
        foreach (string? dir in new[] { nativeDir, appDir })
        {
            if (string.IsNullOrWhiteSpace(dir)) continue;
            string file = Path.Combine(dir, LibraryFileName);
            tried.Add(file);
            if (!File.Exists(file)) continue;
            return TryOpen(file, out var loaded, out string? failure) ? loaded! : new CudaAllocatorStatistics(failure!);
        }
        if (searchDefault)
        {
            tried.Add($"{LibraryFileName} on the loader's search path");
            if (NativeLibrary.TryLoad(LibraryFileName, out _))
                return TryOpen(LibraryFileName, out var loaded, out string? failure) ? loaded! : new CudaAllocatorStatistics(failure!);
        }
        return new CudaAllocatorStatistics(
            $"CUDA allocator statistics are not available: {LibraryFileName} was not found (tried {string.Join(", ", tried)}); " +
            $"on a GPU machine build it with gpu/build-native.sh and set {DirectoryVariable} to its --out folder.");
    }

    /// <summary>Loads a library that exists; false with the reason (the loader's message, or the missing export) when it cannot.</summary>
    private static bool TryOpen(string nameOrPath, out CudaAllocatorStatistics? statistics, out string? failure)
    {
        statistics = null;
        failure = null;
        try
        {
            statistics = new CudaAllocatorStatistics(NativeLibrary.Load(nameOrPath), nameOrPath);
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            failure = $"{nameOrPath} could not be loaded ({e.Message}); check its dependencies with ldd, or rebuild it with gpu/build-native.sh.";
        }
        catch (EntryPointNotFoundException e)
        {
            failure = $"{nameOrPath} is not the library this PatrickStar expects ({e.Message}); rebuild it with gpu/build-native.sh.";
        }
        return false;
    }

    public long AllocatedBytes(int device) => ReadBytes(allocatedBytes, device, "pstar_cuda_allocated_bytes");

    public long PeakAllocatedBytes(int device) => ReadBytes(peakAllocatedBytes, device, "pstar_cuda_peak_allocated_bytes");

    public long ReservedBytes(int device) => ReadBytes(reservedBytes, device, "pstar_cuda_reserved_bytes");

    public void ResetPeak(int device)
    {
        EnsureAvailable();
        Check(resetPeak(device), "pstar_cuda_reset_peak");
    }

    public (long Free, long Total) MemoryInfo(int device)
    {
        EnsureAvailable();
        long free = 0, total = 0;
        Check(memGetInfo(device, &free, &total), "pstar_cuda_mem_get_info");
        return (free, total);
    }

    /// <summary>libtorch's current CUDA stream on <paramref name="device"/> (a cudaStream_t; 0 is the default stream).</summary>
    public nint CurrentStream(int device)
    {
        EnsureAvailable();
        nint stream = 0;
        Check(currentStream(device, &stream), "pstar_cuda_current_stream");
        return stream;
    }

    private long ReadBytes(delegate* unmanaged<int, long*, int> read, int device, string call)
    {
        EnsureAvailable();
        long bytes = 0;
        Check(read(device, &bytes), call);
        return bytes;
    }

    private void EnsureAvailable()
    {
        if (!Available) throw new InvalidOperationException(Status);
    }

    private void Check(int code, string call)
    {
        if (code != 0) throw new CudaException(call, code, LastError());
    }

    private string LastError()
    {
        const int Capacity = 1024;
        byte* buffer = stackalloc byte[Capacity];
        if (lastError(buffer, Capacity) != 0) return "no message";
        var text = new ReadOnlySpan<byte>(buffer, Capacity);
        int end = text.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? text : text[..end]);
    }
}
