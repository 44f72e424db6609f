using Xunit;
namespace PatrickStar.Tests.GpuKit;

/// <summary>gpu/fetch-native-sources.sh: TorchSharp's src/Native exported from a git directory into an ignored folder.</summary>
public class FetchNativeSourcesTests
{
    private static (int Exit, string Out, string Err) Fetch(params string[] args) =>
        ShellScripts.Run("bash", [ShellScripts.InRepo("gpu/fetch-native-sources.sh"), .. args]);

    [TorchSharpMirrorFact]
    public void ExportsLibTorchSharpFromTheMirrorAndStaysSmall()
    {
        using var dir = new TempDir();
        string outDir = Path.Combine(dir.Path, "native-src");

        var (exit, stdout, stderr) = Fetch("--torchsharp-git", TorchSharpMirrorFactAttribute.MirrorPath, "--out", outDir);

        Assert.True(exit == 0, stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "LibTorchSharp", "CMakeLists.txt")));
        Assert.True(File.Exists(Path.Combine(outDir, "LibTorchSharp", "THSTorch.cpp")));
        Assert.True(File.Exists(Path.Combine(outDir, "Stdafx.h")));
        Assert.Contains("torchsharp_version=0.107.0", File.ReadAllText(Path.Combine(outDir, "SOURCE")));
        long bytes = new DirectoryInfo(outDir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Assert.InRange(bytes, 100_000, 4L << 20);
        Assert.Contains(outDir, stdout);
    }

    [Fact]
    public void ANonGitDirectoryIsOneLineNamingTheOption()
    {
        using var dir = new TempDir();
        var (exit, _, stderr) = Fetch("--torchsharp-git", dir.Path, "--out", Path.Combine(dir.Path, "out"));

        Assert.Equal(2, exit);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("--torchsharp-git", stderr);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")));
    }
}
