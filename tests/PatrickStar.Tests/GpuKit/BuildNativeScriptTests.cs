using Xunit;
namespace PatrickStar.Tests.GpuKit;

/// <summary>gpu/build-native.sh, checked by its --dry-run with a fake python that reports a fixed torch.</summary>
public class BuildNativeScriptTests
{
    private const string Prefix = "/opt/fake-torch/share/cmake";

    private static (string Src, string Python) FakeInputs(TempDir dir)
    {
        string src = Path.Combine(dir.Path, "native-src");
        Directory.CreateDirectory(Path.Combine(src, "LibTorchSharp"));
        File.WriteAllText(Path.Combine(src, "Stdafx.h"), "#pragma once\n");
        File.WriteAllText(Path.Combine(src, "LibTorchSharp", "CMakeLists.txt"), "project(LibTorchSharp)\n");
        string python = dir.File("python", $"""
            #!/bin/sh
            echo torch_version=2.11.0+cu130
            echo cuda_version=13.0
            echo cmake_prefix={Prefix}
            echo cxx11_abi=1
            echo torch_lib=/opt/fake-torch/lib
            """.Replace("\r", ""));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(python, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return (src, python);
    }

    private static (int Exit, string Out, string Err) DryRun(string src, string python, string outDir) =>
        ShellScripts.Run("bash", ShellScripts.InRepo("gpu/build-native.sh"), "--src", src, "--ours", ShellScripts.InRepo("native/PatrickStarCuda"),
            "--out", outDir, "--python", python, "--dry-run");

    [Fact]
    public void DryRunPrintsTheConfigureAndBuildOfBothLibrariesAgainstTheTorchPythonReports()
    {
        using var dir = new TempDir();
        var (src, python) = FakeInputs(dir);
        string outDir = Path.Combine(dir.Path, "out");

        var (exit, stdout, stderr) = DryRun(src, python, outDir);

        Assert.True(exit == 0, stderr);
        string[] lines = stdout.Split('\n');
        foreach (string library in new[] { "PatrickStarCuda", "LibTorchSharp" })
        {
            string configure = Assert.Single(lines, l => l.StartsWith("+ cmake -S ") && l.Contains($"/build/{library} "));
            Assert.Contains($"-DCMAKE_PREFIX_PATH={Prefix}", configure);
            Assert.Contains("-G Ninja", configure);
            Assert.Contains("-DCMAKE_BUILD_TYPE=Release", configure);
            Assert.Contains("-DTORCH_CXX11_ABI=1", configure);
            Assert.Single(lines, l => l.StartsWith($"+ cmake --build {outDir}/build/{library} -j 16"));
        }
        Assert.Contains(lines, l => l.Contains($"-DTORCHSHARP_NATIVE_DIR={outDir}/work/src"));
        Assert.Contains($"export LD_LIBRARY_PATH={outDir}:/opt/fake-torch/lib", stdout);
        Assert.Contains($"export PSTAR_NATIVE_DIR={outDir}", stdout);
        Assert.False(Directory.Exists(outDir), "a dry run created the output folder");
    }

    [Fact]
    public void DryRunWithAMatchingStampReusesTheCacheAndRunsNoCmake()
    {
        using var dir = new TempDir();
        var (src, python) = FakeInputs(dir);
        string outDir = Path.Combine(dir.Path, "out");
        string key = DryRun(src, python, outDir).Out.Split('\n').Single(l => l.StartsWith("cache key: "))["cache key: ".Length..];
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "stamp"), key + "\n");
        File.WriteAllText(Path.Combine(outDir, "libLibTorchSharp.so"), "");
        File.WriteAllText(Path.Combine(outDir, "libPatrickStarCuda.so"), "");

        var (exit, stdout, stderr) = DryRun(src, python, outDir);

        Assert.True(exit == 0, stderr);
        Assert.Contains($"reusing libLibTorchSharp.so and libPatrickStarCuda.so in {outDir}", stdout);
        Assert.DoesNotContain("+ cmake", stdout);

        // A changed source is another key: the next run builds again.
        File.AppendAllText(Path.Combine(src, "Stdafx.h"), "// changed\n");
        Assert.Contains("+ cmake -S ", DryRun(src, python, outDir).Out);
    }

    [Fact]
    public void AMissingSourceFolderIsOneLineNamingTheExportScript()
    {
        using var dir = new TempDir();
        var (_, python) = FakeInputs(dir);
        var (exit, _, stderr) = DryRun(Path.Combine(dir.Path, "absent"), python, Path.Combine(dir.Path, "out"));

        Assert.Equal(2, exit);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("gpu/fetch-native-sources.sh", stderr);
    }
}
