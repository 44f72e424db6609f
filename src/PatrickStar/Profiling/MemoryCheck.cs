using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Profiling;

/// <summary>There is not enough memory for a run; the message has the bytes needed and available.</summary>
public sealed class InsufficientMemoryException : Exception
{
    public InsufficientMemoryException(string message) : base(message) { }
}

/// <summary>Refuses, before anything is allocated, runs whose model data cannot fit.</summary>
public static class MemoryCheck
{
    /// <summary>
    /// Throws when <paramref name="neededBytes"/> exceeds what the device can give. On the CPU that is
    /// the host's MemAvailable; CUDA memory cannot be queried through TorchSharp, so it is not checked here.
    /// </summary>
    public static void EnsureFits(string what, long neededBytes, string breakdown, Device device)
    {
        if (device.type != DeviceType.CPU) return;
        long? available = MemoryMeter.AvailableHostMemory();
        if (available is null || neededBytes <= available) return;
        throw new InsufficientMemoryException(
            $"{what} needs {Bytes.Format(neededBytes)} ({neededBytes:N0} bytes: {breakdown}) but only {Bytes.Format(available.Value)} " +
            $"({available.Value:N0} bytes) of memory is available on {device}. Choose a smaller model, or use an engine that offloads model data.");
    }
}
