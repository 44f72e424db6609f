using PatrickStar.Runtime;
using Xunit;

namespace PatrickStar.Tests.Runtime;

public class ElfPatchTests
{
    private static string OriginalLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                      ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    [Fact]
    public void MarkingTheRequirementWeakIsIdempotent()
    {
        string original = OriginalLibrary();
        Assert.True(File.Exists(original), $"restored package library expected at {original}");
        using var dir = new TempDir();
        string copy = dir.File("libLibTorchSharp.so");
        File.Copy(original, copy);

        Assert.True(ElfVersionPatcher.HasStrongRequirement(copy, ElfVersionPatcher.TorchSharpGlibcxxVersion));
        Assert.Equal(ElfPatchOutcome.Patched, ElfVersionPatcher.MarkWeak(copy, ElfVersionPatcher.TorchSharpGlibcxxVersion));
        Assert.False(ElfVersionPatcher.HasStrongRequirement(copy, ElfVersionPatcher.TorchSharpGlibcxxVersion));
        Assert.Equal(ElfPatchOutcome.AlreadyWeak, ElfVersionPatcher.MarkWeak(copy, ElfVersionPatcher.TorchSharpGlibcxxVersion));
        Assert.Equal(ElfPatchOutcome.NotRequired, ElfVersionPatcher.MarkWeak(copy, "GLIBCXX_9.9.99"));

        // Exactly one 16-bit field changed.
        var before = File.ReadAllBytes(original);
        var after = File.ReadAllBytes(copy);
        Assert.Equal(before.Length, after.Length);
        Assert.Single(Enumerable.Range(0, before.Length), i => before[i] != after[i]);
    }

    [Fact]
    public void TheBuildPatchedTheLibraryThisTestLoads()
    {
        string here = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        Assert.True(File.Exists(here));
        Assert.False(ElfVersionPatcher.HasStrongRequirement(here, ElfVersionPatcher.TorchSharpGlibcxxVersion));
        TorchRuntime.EnsureLoaded();
    }

    [Fact]
    public void NonElfFilesAreRejected()
    {
        using var dir = new TempDir();
        string text = dir.File("x.so", "this is not a shared library, only some text long enough for a header.........");
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.MarkWeak(text, "GLIBCXX_3.4.32"));
        Assert.Contains("not an ELF file", e.Message);
    }
}

public class MemoryMeterTests
{
    [Theory]
    [InlineData("VmRSS:\t  123456 kB", 123456L * 1024)]
    [InlineData("VmRSS:\t12345678 kB", 12345678L * 1024)]
    [InlineData("MemAvailable:   24084480 kB", 24084480L * 1024)]
    public void ProcLinesParseWhateverTheirPadding(string line, long bytes) =>
        Assert.Equal(bytes, PatrickStar.Profiling.MemoryMeter.ParseKb(line));

    [Fact]
    public void ASnapshotReadsThisProcess()
    {
        var s = PatrickStar.Profiling.MemoryMeter.Snapshot();
        Assert.True(s.Resident > 0 && s.PeakResident >= s.Resident);
        using var block = new TempBuffer(64 << 20);
        Assert.True(PatrickStar.Profiling.MemoryMeter.NativeInUse() - s.NativeInUse >= 60 << 20, "a 64 MB native allocation must show");
    }

    private sealed unsafe class TempBuffer : IDisposable
    {
        private readonly void* p;
        public TempBuffer(int bytes) => p = System.Runtime.InteropServices.NativeMemory.Alloc((nuint)bytes);
        public void Dispose() => System.Runtime.InteropServices.NativeMemory.Free(p);
    }
}
