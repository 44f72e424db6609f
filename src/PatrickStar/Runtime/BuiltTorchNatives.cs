using PatrickStar.Runtime.Cuda;

namespace PatrickStar.Runtime;

/// <summary>
/// On a machine whose libtorch is a python torch install (the GPU machine: no CUDA libtorch package is served to us),
/// gpu/build-native.sh builds libLibTorchSharp.so against that torch and its env.sh sets <c>PSTAR_NATIVE_DIR</c>.
/// TorchSharp then finds torch_cpu / torch_cuda / LibTorchSharp by name, and looks in the app's folder first: a
/// packaged LibTorchSharp or libtorch left there would be loaded instead and mix two libtorch versions in one process
/// (symbol errors or worse, long after start). This check names such a file before libtorch is touched. Without
/// <c>PSTAR_NATIVE_DIR</c> it does nothing.
/// </summary>
public static class BuiltTorchNatives
{
    public const string LibTorchSharp = "libLibTorchSharp.so";

    /// <summary>Packaged libtorch files that must not sit next to an app that uses a python torch's libtorch.</summary>
    public static readonly string[] PackagedLibtorch = ["libtorch.so", "libtorch_cpu.so", "libtorch_cuda.so", "libc10.so", "libc10_cuda.so"];

    /// <summary>Null when <c>$PSTAR_NATIVE_DIR</c> is unset or the app's folder is consistent with it; otherwise the problem and the fix.</summary>
    public static string? Problem() =>
        Environment.GetEnvironmentVariable(CudaAllocatorStatistics.DirectoryVariable) is { Length: > 0 } dir
            ? Problem(AppContext.BaseDirectory, dir)
            : null;

    public static string? Problem(string appDir, string nativeDir)
    {
        string ours = Path.Combine(nativeDir, LibTorchSharp);
        if (!File.Exists(ours))
            return $"{CudaAllocatorStatistics.DirectoryVariable}={nativeDir} holds no {LibTorchSharp}; build it there with " +
                   $"gpu/build-native.sh --out {nativeDir}, or unset {CudaAllocatorStatistics.DirectoryVariable} to use the packaged libtorch.";
        foreach (string dir in new[] { appDir, Path.Combine(appDir, "runtimes", "linux-x64", "native") })
        {
            string packaged = Path.Combine(dir, LibTorchSharp);
            if (File.Exists(packaged) && !SameBytes(packaged, ours))
                return $"{packaged} is not the {LibTorchSharp} built in {nativeDir}, and TorchSharp would load it first: " +
                       $"copy {ours} over it (or delete it).";
            foreach (string name in PackagedLibtorch)
                if (File.Exists(Path.Combine(dir, name)))
                    return $"{Path.Combine(dir, name)} is a packaged libtorch next to the app, which TorchSharp would load " +
                           $"instead of the python torch {nativeDir}/{LibTorchSharp} was built against: publish without a libtorch package (or delete it).";
        }
        return null;
    }

    private static bool SameBytes(string a, string b)
    {
        if (new FileInfo(a).Length != new FileInfo(b).Length) return false;
        using var first = File.OpenRead(a);
        using var second = File.OpenRead(b);
        var x = new byte[1 << 16];
        var y = new byte[1 << 16];
        int n;
        while ((n = first.ReadAtLeast(x, x.Length, throwOnEndOfStream: false)) > 0)
        {
            second.ReadExactly(y, 0, n);
            if (!x.AsSpan(0, n).SequenceEqual(y.AsSpan(0, n))) return false;
        }
        return true;
    }
}
