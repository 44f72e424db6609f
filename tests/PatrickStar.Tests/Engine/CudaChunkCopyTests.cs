using PatrickStar.Engine;
using PatrickStar.Runtime;
using PatrickStar.Runtime.Cuda;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>The CUDA read-ahead copy (side stream + events) against a fake CUDA runtime: call order, lifetimes, cancel, errors, selection.</summary>
public class CudaChunkCopyTests
{
    private static readonly Device Gpu = new(DeviceType.CUDA, 0);

    public CudaChunkCopyTests() => TorchRuntime.EnsureLoaded();

    private static bool Same(Tensor a, Tensor b)
    {
        using var equal = a.eq(b).all();
        return equal.item<bool>();
    }

    [Fact]
    public void TheCopyRunsOnASideStreamAndComputeWaitsOnItsEventWithoutBlockingTheHost()
    {
        var fake = new FakeCudaRuntime { RunOnComputeWait = false };
        using var source = arange(16, dtype: ScalarType.Float32);
        using var destination = zeros(16, dtype: ScalarType.Float32);
        using (var copier = new CudaChunkCopy(Gpu, fake, isPinned: _ => true))
        {
            Assert.Equal(new[] { "StreamCreate flags 1", "EventCreate flags 2" }, fake.Log);
            fake.Log.Clear();
            var done = copier.Start(destination, source);
            Assert.Equal(new[]
            {
                "EventCreate flags 2", // the copy's own event (pooled afterwards)
                "EventRecord on compute", "StreamWaitEvent side waits", // the side stream waits for compute queued so far
                "MemcpyAsync kind 1 on side", "EventRecord on side",
            }, fake.Log);
            Assert.False(done.IsCompleted);
            fake.Log.Clear();
            done.BeforeUse();
            Assert.Equal(new[] { "StreamWaitEvent compute waits" }, fake.Log); // no host synchronize on the fetch path
            // Still in flight: the tensors stay held and a pinned source is still read.
            Assert.Equal(1, copier.TensorsHeld);
            Assert.False(done.SourceRead);
            Assert.False(Same(destination, source));
            fake.Progress();
            Assert.True(done.SourceRead);
            Assert.Equal(0, copier.TensorsHeld);
            Assert.True(Same(destination, source));
            // The event is reused by the next copy.
            fake.Log.Clear();
            copier.Start(destination, source).Wait();
            Assert.Equal(0, fake.Count("EventCreate"));
        }
        Assert.Equal((0, 0), (fake.LiveStreams, fake.LiveEvents));
    }

    [Fact]
    public void APageableSourceIsFreeOnceTheCallReturnedAndCancelWaitsThenReleases()
    {
        var fake = new FakeCudaRuntime { RunOnComputeWait = false };
        using var source = arange(8, dtype: ScalarType.Float32);
        using var destination = zeros(8, dtype: ScalarType.Float32);
        using var copier = new CudaChunkCopy(Gpu, fake, isPinned: _ => false);
        var done = copier.Start(destination, source);
        Assert.True(done.SourceRead); // CUDA staged a pageable source before cudaMemcpyAsync returned
        Assert.False(done.IsCompleted);
        Assert.Equal(1, copier.TensorsHeld);
        done.Wait(); // cancel: the host waits for the event, then the tensors go
        Assert.Equal(1, fake.Count("EventSynchronize"));
        Assert.Equal(0, copier.TensorsHeld);
        Assert.True(Same(destination, source));
    }

    [Fact]
    public void DisposingWaitsForCopiesInFlight()
    {
        var fake = new FakeCudaRuntime { RunOnComputeWait = false };
        using var source = arange(8, dtype: ScalarType.Float32);
        using var destination = zeros(8, dtype: ScalarType.Float32);
        var copier = new CudaChunkCopy(Gpu, fake, isPinned: _ => true);
        copier.Start(destination, source);
        copier.Dispose();
        Assert.True(Same(destination, source));
        Assert.Equal((0, 0, 1), (fake.LiveStreams, fake.LiveEvents, fake.Count("EventSynchronize")));
    }

    [Fact]
    public void CudaErrorsNameTheCallAndTheError()
    {
        var fake = new FakeCudaRuntime { FailWith = "MemcpyAsync" };
        using var source = arange(8, dtype: ScalarType.Float32);
        using var destination = zeros(8, dtype: ScalarType.Float32);
        using var copier = new CudaChunkCopy(Gpu, fake);
        var e = Assert.Throws<CudaException>(() => copier.Start(destination, source));
        Assert.Equal("CUDA call cudaMemcpyAsync failed: cudaErrorInvalidValue (error 1).", e.Message);

        fake.FailWith = "EventQuery";
        fake.FailCode = 700;
        var done = copier.Start(destination, source);
        Assert.Equal("CUDA call cudaEventQuery failed: cudaErrorIllegalAddress (error 700).",
            Assert.Throws<CudaException>(() => done.IsCompleted).Message);
        fake.FailWith = "StreamWaitEvent";
        Assert.Throws<CudaException>(() => copier.Start(destination, source));
        Assert.Equal(1, copier.TensorsHeld); // the failed start queued nothing and holds nothing; the copy above is still in flight
        fake.FailWith = null;

        var refused = new FakeCudaRuntime { FailWith = "StreamCreate" };
        Assert.Contains("cudaStreamCreateWithFlags failed: cudaErrorInvalidValue", Assert.Throws<CudaException>(() => new CudaChunkCopy(Gpu, refused)).Message);
    }

    [Fact]
    public void CallsRunOnTheCopiersDeviceAndTheCurrentDeviceIsRestored()
    {
        var fake = new FakeCudaRuntime();
        using var source = arange(8, dtype: ScalarType.Float32);
        using var destination = zeros(8, dtype: ScalarType.Float32);
        using var copier = new CudaChunkCopy(new Device(DeviceType.CUDA, 1), fake);
        copier.Start(destination, source).BeforeUse();
        Assert.Equal(0, fake.CurrentDevice);
        Assert.All(fake.Log.Where(l => l.StartsWith("SetDevice")), l => Assert.Contains(l, new[] { "SetDevice 1", "SetDevice 0" }));
        Assert.True(fake.Count("SetDevice 1") >= 3);
    }

    [Fact]
    public void CudaDevicesGetTheSideStreamOrTheCurrentStreamWithANoticeWhenLibcudartIsMissing()
    {
        using (var cpuCopy = AsyncChunkCopy.For(CPU)) Assert.IsType<WorkerThreadChunkCopy>(cpuCopy);
        var notices = new List<string>();
        using (var copy = AsyncChunkCopy.For(Gpu, () => (new FakeCudaRuntime(), ""), notices.Add))
            Assert.IsType<CudaChunkCopy>(copy);
        Assert.Empty(notices);
        using (var copy = AsyncChunkCopy.For(new Device(DeviceType.CUDA, 1), () => (null, "libcudart could not be loaded (tried libcudart.so.12)"), notices.Add))
            Assert.Equal(new Device(DeviceType.CUDA, 1).ToString(), Assert.IsType<CudaCurrentStreamChunkCopy>(copy).Device.ToString());
        Assert.Equal(new[] { "notice: chunk read-ahead copies run on the compute stream, not a side stream: libcudart could not be loaded (tried libcudart.so.12)." }, notices);
    }

    [Fact]
    public void TheSelfCheckSeesTheValuesOnlyWhenComputeWaitsOnTheCopy()
    {
        var ok = CudaCopyCheck.Run(new FakeCudaRuntime(), CPU, 1 << 20, pinned: false);
        Assert.True(ok.Equal, ok.ToString());
        Assert.Equal(1 << 20, ok.Bytes);
        // A runtime where the compute stream's wait does not order the copy: the read-back sees the old contents.
        var unordered = CudaCopyCheck.Run(new FakeCudaRuntime { RunOnComputeWait = false }, CPU, 1 << 20, pinned: false);
        Assert.False(unordered.Equal);
        Assert.EndsWith("VALUES DIFFER", unordered.ToString());

        // Without libcudart (this machine) the command says so in one line.
        var (code, stdout, stderr) = PatrickStar.Tests.Cli.CliTests.Pstar("cuda-check", "--size", "1MiB");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Matches("^error: (libcudart could not be loaded \\(tried .*\\); install the CUDA libtorch package|no CUDA device)", stderr.Trim());
        Assert.DoesNotContain("\n", stderr.Trim());
    }
}
