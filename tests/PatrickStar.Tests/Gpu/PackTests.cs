using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Gpu;

/// <summary>gpu/pack.sh: what travels to the GPU machine stays under 60 MiB, holds the app, the device tests and the runtime, and no libtorch.</summary>
public class PackTests
{
    private const long MaxBytes = 60L << 20;
    private readonly ITestOutputHelper output;

    public PackTests(ITestOutputHelper output) => this.output = output;

    private static List<string> TarList(string archive)
    {
        var start = new ProcessStartInfo("tar") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-tJf", archive }) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var names = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(n => n.TrimStart('.', '/')).ToList();
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
        return names;
    }

    [Fact]
    public void ThePackageHoldsWhatARunNeedsUnder60MiBAndNoLibtorch()
    {
        using var dir = new TempDir();
        // Stand-in for TorchSharp's src/Native (the real export needs a TorchSharp git directory, which CI does not have).
        string sources = Path.Combine(dir.Path, "Native");
        Directory.CreateDirectory(Path.Combine(sources, "LibTorchSharp"));
        File.WriteAllText(Path.Combine(sources, "LibTorchSharp", "CMakeLists.txt"), "# stand-in\n");
        string pack = Path.Combine(dir.Path, "pack");

        var (code, stdout, stderr, took) = GpuScripts.Run("pack.sh", TimeSpan.FromMinutes(15), "--out", pack, "--native-src", sources);
        output.WriteLine($"pack.sh took {took.TotalSeconds:0} s: {stdout.Trim()}");
        Assert.True(code == 0, $"pack.sh exit {code}: {stderr}");

        long total = Directory.EnumerateFiles(pack, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        output.WriteLine(File.ReadAllText(Path.Combine(pack, "MANIFEST.txt")));
        Assert.True(total <= MaxBytes, $"the package is {total:N0} bytes, over {MaxBytes:N0}");
        Assert.Contains($"pack: {pack} is {total / 1048576.0:0.0} MiB ({total} bytes)", stdout);
        long listed = total - new FileInfo(Path.Combine(pack, "MANIFEST.txt")).Length;
        Assert.Contains($"total_bytes {listed} (all but this file)", File.ReadAllLines(Path.Combine(pack, "MANIFEST.txt")));

        var app = TarList(Path.Combine(pack, "app.tar.xz"));
        Assert.Contains("app/pstar.dll", app);
        Assert.Contains("app/pstar.runtimeconfig.json", app);
        Assert.Contains("app/TorchSharp.dll", app);
        Assert.Contains("tests/PatrickStar.DeviceTests.dll", app);
        Assert.Contains("tests/PatrickStar.DeviceTests.runtimeconfig.json", app);
        Assert.DoesNotContain(app, n => Path.GetFileName(n).StartsWith("libtorch") || Path.GetFileName(n).StartsWith("libLibTorchSharp"));

        var runtime = TarList(Path.Combine(pack, "dotnet-runtime.tar.xz"));
        Assert.Contains("dotnet", runtime);
        Assert.Single(runtime, n => n.StartsWith("host/fxr/") && n.EndsWith("/libhostfxr.so"));
        Assert.Single(runtime, n => n.StartsWith("shared/Microsoft.NETCore.App/10.") && n.EndsWith("/System.Private.CoreLib.dll"));
        Assert.DoesNotContain(runtime, n => n.StartsWith("sdk/"));

        Assert.True(File.Exists(Path.Combine(pack, "native-src", "LibTorchSharp", "CMakeLists.txt")));
        foreach (var script in new[] { "run.sh", "report.py", "pack.sh" })
            Assert.True(File.Exists(Path.Combine(pack, "gpu", script)), $"gpu/{script} must travel in the package");
    }

    [Fact]
    public void WithoutTheNativeSourcesThePackStopsAtOnceNamingTheFlag()
    {
        using var dir = new TempDir();
        string pack = Path.Combine(dir.Path, "pack");
        var (code, stdout, stderr, took) = GpuScripts.Run("pack.sh", TimeSpan.FromMinutes(1), "--out", pack, "--torchsharp-git", Path.Combine(dir.Path, "no-git-here"));
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        string line = stderr.Trim();
        Assert.DoesNotContain("\n", line);
        Assert.StartsWith("pack.sh: the LibTorchSharp sources could not be exported", line);
        Assert.Contains("--torchsharp-git DIR", line);
        Assert.False(File.Exists(Path.Combine(pack, "app.tar.xz")), "nothing is published before the sources are there");
        Assert.True(took < TimeSpan.FromSeconds(20), $"the check must come first (took {took.TotalSeconds:0} s)");
    }
}
