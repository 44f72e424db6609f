using TorchSharp;

namespace PatrickStar.Runtime;

/// <summary>
/// The one place that starts libtorch: checks that it loads (and explains why when it does not),
/// picks the compute device and the thread count.
/// </summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool _ready;

    /// <summary>Resident bytes right after libtorch first loaded (.NET and libtorch, no model yet); null before.</summary>
    public static long? ResidentAfterLoad { get; private set; }

    /// <summary>Loads libtorch once; throws <see cref="TorchLoadException"/> with the cause and the fix.</summary>
    public static void EnsureLoaded()
    {
        if (_ready) return;
        lock (Gate)
        {
            if (_ready) return;
            NativeAllocator.RetainFreedMemory();
            if (BuiltTorchNatives.Problem() is { } problem) throw new TorchLoadException(problem);
            try
            {
                using var probe = torch.ones(1);
                _ready = true;
                ResidentAfterLoad = Environment.WorkingSet;
            }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
            {
                throw new TorchLoadException(Diagnose(e), e);
            }
        }
    }

    /// <summary>Explains a load failure better than TorchSharp's "doesn't contain a reference to libtorch".</summary>
    internal static string Diagnose(Exception e)
    {
        string dir = AppContext.BaseDirectory;
        string[] candidates =
        {
            Path.Combine(dir, "libLibTorchSharp.so"),
            Path.Combine(dir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
        };
        string? lib = candidates.FirstOrDefault(File.Exists);
        if (OperatingSystem.IsLinux() && lib is null)
            return $"libtorch could not be loaded: libLibTorchSharp.so is not in {dir}. " +
                   "Reference the packages TorchSharp and libtorch-cpu-linux-x64 (or a CUDA libtorch package) and rebuild.";
        if (OperatingSystem.IsLinux() && lib is not null)
        {
            try
            {
                if (ElfVersionPatcher.HasStrongRequirement(lib, ElfVersionPatcher.TorchSharpGlibcxxVersion))
                    return $"libtorch could not be loaded: {lib} requires {ElfVersionPatcher.TorchSharpGlibcxxVersion}, " +
                           "which this system's libstdc++ does not provide (Debian 12 and Ubuntu 22.04 stop at GLIBCXX_3.4.30). " +
                           "Fix: rebuild with `dotnet build` — PatrickStar's build step (build/TorchNative.targets) marks that " +
                           "requirement weak in every output folder — or install a libstdc++ from GCC 13 or newer.";
            }
            catch (Exception inspect)
            {
                return $"libtorch could not be loaded and {lib} could not be inspected ({inspect.Message}): {Innermost(e).Message}";
            }
        }
        return $"libtorch could not be loaded: {Innermost(e).Message}. " +
               "Check that the native libraries (libtorch_cpu.so, libLibTorchSharp.so) are in the output folder and that `ldd` finds all their dependencies.";
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    /// <summary>Resolves "auto", "cpu", "cuda", "cuda:N" to a torch device.</summary>
    public static torch.Device ResolveDevice(string spec)
    {
        EnsureLoaded();
        string s = spec.Trim().ToLowerInvariant();
        if (s == "auto") return torch.cuda.is_available() ? torch.CUDA : torch.CPU;
        if (s.StartsWith("cuda"))
        {
            if (!torch.cuda.is_available())
                throw new ArgumentException($"device '{spec}' was asked for but no CUDA device is available to libtorch " +
                                            "(a CPU libtorch build: rebuild with -p:TorchBackend=cuda for libtorch's CUDA package, or use device 'cpu').");
            return torch.device(s);
        }
        if (s == "cpu") return torch.CPU;
        throw new ArgumentException($"device '{spec}' is not known; use auto, cpu, cuda or cuda:N.");
    }

    /// <summary>Sets torch's intra-op threads once (0 keeps torch's default). Toggling it back and forth is slow.</summary>
    public static void ConfigureThreads(int threads)
    {
        EnsureLoaded();
        if (threads > 0 && torch.get_num_threads() != threads) torch.set_num_threads(threads);
    }
}

/// <summary>libtorch could not be loaded; the message names the cause and the fix.</summary>
public sealed class TorchLoadException : Exception
{
    public TorchLoadException(string message, Exception inner) : base(message, inner) { }
    public TorchLoadException(string message) : base(message) { }
}
