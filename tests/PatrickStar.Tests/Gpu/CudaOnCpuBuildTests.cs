using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Gpu;

/// <summary>This machine's build has the CPU libtorch: asking for CUDA is refused in one line that says how to get it.</summary>
public class CudaOnCpuBuildTests
{
    [Theory]
    [InlineData("cuda")]
    [InlineData("cuda:0")]
    public void TrainOnCudaIsRefusedInOneLineNamingTheFix(string device)
    {
        using var dir = new TempDir();
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");
        var (code, stdout, stderr) = Pstar("train", "--model", "gpt2-tiny", "--steps", "1", "--device", device, "--metrics", metrics, "--plain-output");
        Assert.Equal(1, code);
        Assert.Equal($"error: device '{device}' was asked for but no CUDA device is available to libtorch (a CPU libtorch build: " +
                     "rebuild with -p:TorchBackend=cuda for libtorch's CUDA package, or use device 'cpu').", stderr.Trim());
        Assert.DoesNotContain("   at ", stdout + stderr);
        Assert.False(File.Exists(metrics), "nothing may be written for a refused run");
    }
}
