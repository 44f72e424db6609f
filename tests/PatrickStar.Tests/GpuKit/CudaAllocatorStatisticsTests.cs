using Xunit;
using PatrickStar.Runtime.Cuda;

namespace PatrickStar.Tests.GpuKit;

/// <summary>
/// The C# side of libPatrickStarCuda. Without the library (every CPU machine) it reports itself unavailable; with a
/// stand-in built here by gcc, exporting the same C functions, the marshalling of each reading is checked.
/// </summary>
public class CudaAllocatorStatisticsTests
{
    // The helper's C ABI (native/PatrickStarCuda/pstar_cuda.cpp), with fixed readings; device 1 does not exist.
    private const string FakeSource = """
        #include <stdint.h>
        #include <string.h>
        static const char* last = "";
        static int64_t allocated = 3000000000LL, peak = 5000000000LL;
        static int fail(const char* message) { last = message; return 1; }
        int pstar_cuda_last_error(char* buffer, int length) { strncpy(buffer, last, length - 1); buffer[length - 1] = 0; return 0; }
        int pstar_cuda_device_count(int* count) { *count = DEVICES; return 0; }
        int pstar_cuda_allocated_bytes(int device, int64_t* bytes) { if (device != 0) return fail("CUDA device 1 does not exist (1 devices)"); *bytes = allocated; return 0; }
        int pstar_cuda_peak_allocated_bytes(int device, int64_t* bytes) { *bytes = peak; return 0; }
        int pstar_cuda_reset_peak(int device) { peak = allocated; return 0; }
        int pstar_cuda_reserved_bytes(int device, int64_t* bytes) { *bytes = 6000000000LL; return 0; }
        int pstar_cuda_mem_get_info(int device, int64_t* free_bytes, int64_t* total_bytes) { *free_bytes = 100000000000LL; *total_bytes = 150000000000LL; return 0; }
        int pstar_cuda_current_stream(int device, void** stream) { *stream = (void*)0x5000; return 0; }
        """;

    private static string BuildFake(TempDir dir, int devices)
    {
        string source = dir.File("fake.c", FakeSource);
        string folder = Path.Combine(dir.Path, $"devices{devices}");
        Directory.CreateDirectory(folder);
        var (exit, _, stderr) = ShellScripts.Run("gcc", "-shared", "-fPIC", $"-DDEVICES={devices}", "-o",
            Path.Combine(folder, CudaAllocatorStatistics.LibraryFileName), source);
        Assert.True(exit == 0, stderr);
        return folder;
    }

    [Fact]
    public void WithoutTheLibraryItIsUnavailableAndAReadingSaysWhy()
    {
        using var dir = new TempDir();
        var statistics = CudaAllocatorStatistics.Load(Path.Combine(dir.Path, "absent"), dir.Path, searchDefault: false);

        Assert.False(statistics.Available);
        Assert.Equal(0, statistics.DeviceCount);
        Assert.Contains(CudaAllocatorStatistics.LibraryFileName, statistics.Status);
        Assert.Contains("gpu/build-native.sh", statistics.Status);
        var e = Assert.Throws<InvalidOperationException>(() => statistics.AllocatedBytes(0));
        Assert.Equal(statistics.Status, e.Message);
        Assert.Throws<InvalidOperationException>(() => statistics.MemoryInfo(0));
    }

    [Fact]
    public void TheDefaultLoadOnACpuMachineDoesNotThrow()
    {
        var statistics = CudaAllocatorStatistics.Load();
        Assert.Equal(statistics.Available, statistics.DeviceCount > 0);
        Assert.False(string.IsNullOrEmpty(statistics.Status));
    }

    [ProgramFact("gcc")]
    public void EachReadingIsMarshalledFromTheNativeLibrary()
    {
        using var dir = new TempDir();
        string folder = BuildFake(dir, devices: 1);
        var statistics = CudaAllocatorStatistics.Load(folder, Path.Combine(dir.Path, "elsewhere"), searchDefault: false);

        Assert.True(statistics.Available, statistics.Status);
        Assert.Equal(1, statistics.DeviceCount);
        Assert.Equal(3_000_000_000L, statistics.AllocatedBytes(0));
        Assert.Equal(5_000_000_000L, statistics.PeakAllocatedBytes(0));
        statistics.ResetPeak(0);
        Assert.Equal(3_000_000_000L, statistics.PeakAllocatedBytes(0));
        Assert.Equal(6_000_000_000L, statistics.ReservedBytes(0));
        Assert.Equal((100_000_000_000L, 150_000_000_000L), statistics.MemoryInfo(0));
        Assert.Equal((nint)0x5000, statistics.CurrentStream(0));

        var e = Assert.Throws<CudaException>(() => statistics.AllocatedBytes(1));
        Assert.Equal("pstar_cuda_allocated_bytes", e.Call);
        Assert.Equal("CUDA device 1 does not exist (1 devices)", e.ErrorName);
    }

    [ProgramFact("gcc")]
    public void ALibraryThatSeesNoDeviceIsUnavailable()
    {
        using var dir = new TempDir();
        string folder = BuildFake(dir, devices: 0);
        var statistics = CudaAllocatorStatistics.Load(nativeDir: null, appDir: folder, searchDefault: false);

        Assert.False(statistics.Available);
        Assert.Contains("no CUDA device", statistics.Status);
        Assert.Throws<InvalidOperationException>(() => statistics.ReservedBytes(0));
    }

    [Fact]
    public void AFileThatIsNotALibraryIsReportedNotThrown()
    {
        using var dir = new TempDir();
        dir.File(CudaAllocatorStatistics.LibraryFileName, "not an ELF file");
        var statistics = CudaAllocatorStatistics.Load(dir.Path, dir.Path, searchDefault: false);

        Assert.False(statistics.Available);
        Assert.Contains("could not be loaded", statistics.Status);
    }
}
