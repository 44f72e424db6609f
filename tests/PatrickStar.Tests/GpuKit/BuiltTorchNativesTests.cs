using Xunit;
using PatrickStar.Runtime;

namespace PatrickStar.Tests.GpuKit;

/// <summary>With PSTAR_NATIVE_DIR, the app's folder must not hold a packaged LibTorchSharp or libtorch that TorchSharp would load first.</summary>
public class BuiltTorchNativesTests
{
    private static (string App, string Native) Folders(TempDir dir, string ours = "built against python torch")
    {
        string app = Path.Combine(dir.Path, "app");
        string native = Path.Combine(dir.Path, "native");
        Directory.CreateDirectory(Path.Combine(app, "runtimes", "linux-x64", "native"));
        Directory.CreateDirectory(native);
        File.WriteAllText(Path.Combine(native, BuiltTorchNatives.LibTorchSharp), ours);
        return (app, native);
    }

    [Fact]
    public void AnAppFolderWithOurCopyOrNoneIsFine()
    {
        using var dir = new TempDir();
        var (app, native) = Folders(dir);
        Assert.Null(BuiltTorchNatives.Problem(app, native));

        File.Copy(Path.Combine(native, BuiltTorchNatives.LibTorchSharp), Path.Combine(app, BuiltTorchNatives.LibTorchSharp));
        Assert.Null(BuiltTorchNatives.Problem(app, native));
    }

    [Fact]
    public void APackagedLibTorchSharpOfTheSameSizeIsNamed()
    {
        using var dir = new TempDir();
        var (app, native) = Folders(dir);
        string packaged = Path.Combine(app, "runtimes", "linux-x64", "native", BuiltTorchNatives.LibTorchSharp);
        File.WriteAllText(packaged, "built against python torcH");   // same length, other bytes

        string? problem = BuiltTorchNatives.Problem(app, native);

        Assert.NotNull(problem);
        Assert.StartsWith(packaged, problem);
        Assert.Contains("copy", problem);
    }

    [Fact]
    public void APackagedLibtorchNextToTheAppIsNamed()
    {
        using var dir = new TempDir();
        var (app, native) = Folders(dir);
        File.WriteAllText(Path.Combine(app, "libtorch_cpu.so"), "");

        string? problem = BuiltTorchNatives.Problem(app, native);

        Assert.NotNull(problem);
        Assert.Contains(Path.Combine(app, "libtorch_cpu.so"), problem);
        Assert.Contains("publish without a libtorch package", problem);
    }

    [Fact]
    public void ANativeFolderWithoutTheLibraryNamesTheBuildScript()
    {
        using var dir = new TempDir();
        var (app, native) = Folders(dir);
        File.Delete(Path.Combine(native, BuiltTorchNatives.LibTorchSharp));

        string? problem = BuiltTorchNatives.Problem(app, native);

        Assert.NotNull(problem);
        Assert.Contains("gpu/build-native.sh --out " + native, problem);
    }
}
