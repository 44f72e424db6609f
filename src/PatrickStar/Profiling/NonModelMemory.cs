using PatrickStar.Runtime.Cuda;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Profiling;

/// <summary>
/// The allocator reading the engine's non-model tracer subtracts the chunks from: on a CPU device the process's native
/// allocations (glibc), on a CUDA device the caching allocator's allocated bytes. The warm-up takes the peak of each
/// moment (<see cref="StartPeaks"/>, then <see cref="TakePeak"/> at every moment), later iterations the reading now.
/// </summary>
public interface INonModelMemoryReader : IDisposable
{
    /// <summary>What is read, for messages ("the CUDA caching allocator's allocated bytes on cuda:0").</summary>
    string Source { get; }

    /// <summary>False when nothing can be read (CUDA without the allocator statistics): non-model memory is then taken as 0.</summary>
    bool Measures { get; }

    /// <summary>True when the reading includes the host tier's chunk buffers too (a CPU device: one memory).</summary>
    bool IncludesHostTier { get; }

    /// <summary>Starts the first peak window (the warm-up).</summary>
    void StartPeaks();

    /// <summary>The most the reading has been since the last call (or <see cref="StartPeaks"/>), the reading now included; a new window starts.</summary>
    long TakePeak();

    /// <summary>The warm-up is over: no more peaks (a sampling thread stops).</summary>
    void EndPeaks();

    /// <summary>The reading now.</summary>
    long Current();
}

/// <summary>CPU device: glibc's in-use bytes, its peaks caught by a sampling thread (<see cref="PeakSampler"/>).</summary>
public sealed class HostAllocatorReader : INonModelMemoryReader
{
    private PeakSampler? sampler;

    public string Source => "the process's native allocations (glibc)";
    public bool Measures => true;
    public bool IncludesHostTier => true;

    public void StartPeaks()
    {
        sampler ??= new PeakSampler();
        sampler.Start();
    }

    public long TakePeak() => sampler?.TakePeak() ?? Current();
    public long Current() => MemoryMeter.NativeInUse();

    public void EndPeaks()
    {
        sampler?.Dispose();
        sampler = null;
    }

    public void Dispose() => EndPeaks();
}

/// <summary>
/// CUDA device: libtorch's caching allocator keeps the peak itself (allocated_bytes.all.peak), exactly, so no sampling
/// thread: the peak is reset at each moment's start and read at the next one.
/// </summary>
public sealed class CudaAllocatorReader(ICudaAllocatorStatistics statistics, int device) : INonModelMemoryReader
{
    public string Source => $"the CUDA caching allocator's allocated bytes on cuda:{device}";
    public bool Measures => true;
    public bool IncludesHostTier => false;

    public void StartPeaks() => statistics.ResetPeak(device);

    public long TakePeak()
    {
        long peak = Math.Max(statistics.PeakAllocatedBytes(device), statistics.AllocatedBytes(device));
        statistics.ResetPeak(device);
        return peak;
    }

    public void EndPeaks() { }
    public long Current() => statistics.AllocatedBytes(device);
    public void Dispose() { }
}

/// <summary>Nothing to read (CUDA without the allocator statistics): the tracer sees no non-model memory.</summary>
public sealed class NoMemoryReading(string why) : INonModelMemoryReader
{
    public string Source => $"nothing ({why})";
    public bool Measures => false;
    public bool IncludesHostTier => false;
    public void StartPeaks() { }
    public long TakePeak() => 0;
    public void EndPeaks() { }
    public long Current() => 0;
    public void Dispose() { }
}

/// <summary>Chooses the non-model reading for a compute device.</summary>
public static class NonModelMemory
{
    private static int warned;

    /// <summary>
    /// CPU: <see cref="HostAllocatorReader"/>. CUDA: <see cref="CudaAllocatorReader"/> when the allocator statistics are
    /// available, else <see cref="NoMemoryReading"/> after a one-line warning (once per process unless
    /// <paramref name="warning"/> is given). Other devices: no reading, without a warning (as before).
    /// </summary>
    /// <param name="statistics">The CUDA allocator statistics (null: none); called only for a CUDA device.</param>
    /// <param name="warning">Where the warning goes; by default standard error.</param>
    public static INonModelMemoryReader For(Device device, Func<ICudaAllocatorStatistics?> statistics, Action<string>? warning = null)
    {
        if (device.type == DeviceType.CPU) return new HostAllocatorReader();
        if (device.type != DeviceType.CUDA) return new NoMemoryReading($"no allocator statistics for {device.type}");
        var s = statistics();
        if (s is { Available: true }) return new CudaAllocatorReader(s, CudaIndex(device));
        const string why = "the CUDA allocator statistics are not available (libPatrickStarCuda not found)";
        if (warning is not null || Interlocked.Exchange(ref warned, 1) == 0)
            (warning ?? (line => Console.Error.WriteLine($"warning: {line}")))(
                $"non-model memory on {device} is not measured: {why}; the placement sees only the chunks. Build the native helper (gpu/build-native.sh).");
        return new NoMemoryReading(why);
    }

    /// <summary>The CUDA device number of <paramref name="device"/>; "cuda" without a number is device 0 (libtorch's current device unless set).</summary>
    public static int CudaIndex(Device device) => device.index < 0 ? 0 : device.index;
}
