using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;
using PatrickStar.Optimizer;
using PatrickStar.Profiling;
using TorchSharp;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>The facts a benchmark figure needs beside it to mean anything: which processor, how many threads, which vector units.</summary>
public sealed record MachineFacts(
    string Device,
    int ProcessorCount,
    int TorchThreads,
    string CpuModel,
    bool Avx2,
    bool Avx512,
    bool Avx512Bf16,
    bool AmxBf16,
    string FusedAdamKernel,
    long? MemoryTotalBytes,
    long? MemoryAvailableBytes,
    string Os,
    string Runtime,
    string TorchSharp)
{
    /// <summary>Reads the facts now (torch must be loaded: the thread count is libtorch's).</summary>
    public static MachineFacts Read(torch.Device device)
    {
        var cpu = ReadCpuInfo();
        var flags = cpu.Flags;
        return new MachineFacts(
            device.ToString(),
            Environment.ProcessorCount,
            torch.get_num_threads(),
            cpu.Model ?? RuntimeInformation.ProcessArchitecture.ToString(),
            // /proc/cpuinfo where there is one; elsewhere what the .NET JIT detected.
            flags.Count > 0 ? flags.Contains("avx2") : System.Runtime.Intrinsics.X86.Avx2.IsSupported,
            flags.Count > 0 ? flags.Contains("avx512f") : Avx512F.IsSupported,
            flags.Contains("avx512_bf16"),
            flags.Contains("amx_bf16"),
            CpuAdamKernel.Best.ToString(),
            ReadMeminfo("MemTotal:"),
            MemoryMeter.AvailableHostMemory(),
            RuntimeInformation.OSDescription,
            RuntimeInformation.FrameworkDescription,
            typeof(torch).Assembly.GetName().Version?.ToString() ?? "?");
    }

    /// <summary>Whether bf16 matmuls are fast here without measuring them: a CUDA device, or a CPU with AVX-512 BF16 or AMX.</summary>
    public bool Bf16LikelyFast => Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) || Avx512Bf16 || AmxBf16;

    public IEnumerable<(string Name, string Value)> Describe()
    {
        yield return ("device", Device);
        yield return ("CPU", $"{CpuModel}, {ProcessorCount} logical processors, torch threads {TorchThreads}");
        yield return ("vector units", $"AVX2 {YesNo(Avx2)}, AVX-512 {YesNo(Avx512)}, AVX-512 BF16 {YesNo(Avx512Bf16)}, AMX BF16 {YesNo(AmxBf16)}; " +
                                      $"fused Adam kernel: {FusedAdamKernel} (.NET Vector512 accelerated: {YesNo(Vector512.IsHardwareAccelerated)})");
        yield return ("memory", $"{(MemoryTotalBytes is long t ? Bytes.Format(t) : "?")} total, " +
                                $"{(MemoryAvailableBytes is long a ? Bytes.Format(a) : "?")} available at start");
        yield return ("software", $"{Runtime}, TorchSharp {TorchSharp}, {Os}");
    }

    public JsonObject ToJson() => new()
    {
        ["device"] = Device,
        ["processor_count"] = ProcessorCount,
        ["torch_threads"] = TorchThreads,
        ["cpu_model"] = CpuModel,
        ["avx2"] = Avx2,
        ["avx512"] = Avx512,
        ["avx512_bf16"] = Avx512Bf16,
        ["amx_bf16"] = AmxBf16,
        ["vector512_hardware_accelerated"] = Vector512.IsHardwareAccelerated,
        ["fused_adam_kernel"] = FusedAdamKernel,
        ["memory_total_bytes"] = MemoryTotalBytes,
        ["memory_available_bytes"] = MemoryAvailableBytes,
        ["os"] = Os,
        ["runtime"] = Runtime,
        ["torchsharp"] = TorchSharp,
    };

    private static string YesNo(bool b) => b ? "yes" : "no";

    private static (string? Model, HashSet<string> Flags) ReadCpuInfo()
    {
        string? model = null;
        var flags = new HashSet<string>();
        try
        {
            if (!File.Exists("/proc/cpuinfo")) return (null, flags);
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon < 0) continue;
                string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                if (key == "model name" && model is null) model = value;
                // Every processor lists the same flags: the first list is enough.
                else if (key == "flags" && flags.Count == 0) flags.UnionWith(value.Split(' ', StringSplitOptions.RemoveEmptyEntries));
            }
        }
        catch (IOException)
        {
            // An unreadable /proc only costs the report its CPU line.
        }
        return (model, flags);
    }

    private static long? ReadMeminfo(string key)
    {
        if (!File.Exists("/proc/meminfo")) return null;
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith(key)) return MemoryMeter.ParseKb(line);
        return null;
    }
}
