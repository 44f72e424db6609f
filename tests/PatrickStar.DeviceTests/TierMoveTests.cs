using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.DeviceTests;

/// <summary>Chunk payloads between the device tier and the host tier: contents arrive, budgets hold, buffers are reused.</summary>
public class TierMoveTests
{
    private const long Elements = 1L << 20; // 4 MiB of fp32

    [Fact]
    public void TheDeviceIsTheOneAsked()
    {
        var device = TestDevice.Get();
        Assert.Equal(TestDevice.Name.StartsWith("cuda", StringComparison.OrdinalIgnoreCase) ? DeviceType.CUDA : DeviceType.CPU, device.type);
        using var t = ones(4, device: device);
        Assert.Equal(device.type, t.device_type);
        if (device.type == DeviceType.CUDA) Assert.True(cuda.is_available());
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void APayloadGoesToTheHostAndBackWithItsContents(ScalarType dtype)
    {
        var device = TestDevice.Get();
        using var deviceTier = new TierMemory(Tier.Device, device, 16L << 20);
        using var hostTier = new TierMemory(Tier.Host, CPU, 16L << 20);
        using var expected = randn(Elements, dtype: ScalarType.Float32).to(dtype);

        var onDevice = deviceTier.Acquire(dtype, Elements, "test payload");
        using (no_grad()) onDevice.copy_(expected);
        var onHost = hostTier.Acquire(dtype, Elements, "test payload");
        using (no_grad()) onHost.copy_(onDevice);
        deviceTier.Return(onDevice);
        Assert.Equal(CPU.type, onHost.device_type);
        Assert.Equal(0, deviceTier.InUseBytes);
        Assert.Equal(TierMemory.Bytes(dtype, Elements), hostTier.InUseBytes);

        // Back to the device: the pooled buffer is taken again (no fresh allocation) and holds the values it left with.
        long fresh = deviceTier.FreshAllocations;
        var back = deviceTier.Acquire(dtype, Elements, "test payload");
        Assert.Equal(fresh, deviceTier.FreshAllocations);
        using (no_grad()) back.copy_(onHost);
        hostTier.Return(onHost);
        using (var read = back.cpu())
        using (var same = read.eq(expected).all())
            Assert.True(same.item<bool>(), "the payload changed on its way to the host and back");
        Assert.Equal(device.type, back.device_type);
        deviceTier.Return(back);
    }

    [Fact]
    public void ATierRefusesWhatExceedsItsBudgetAndStaysAsItWas()
    {
        var device = TestDevice.Get();
        long bytes = TierMemory.Bytes(ScalarType.Float32, Elements);
        using var tier = new TierMemory(Tier.Device, device, bytes + bytes / 2);
        var first = tier.Acquire(ScalarType.Float32, Elements, "first chunk");
        var e = Assert.Throws<TierBudgetExceededException>(() => tier.Acquire(ScalarType.Float32, Elements, "second chunk"));
        Assert.Contains($"needs {bytes:N0} bytes on the device tier", e.Message);
        Assert.Contains("--device-memory", e.Message);
        Assert.Equal(bytes, tier.InUseBytes);
        Assert.Equal(1, tier.FreshAllocations);
        tier.Return(first);
        // Returned, the buffer makes room: the same request now succeeds from the pool.
        var again = tier.Acquire(ScalarType.Float32, Elements, "second chunk");
        Assert.Equal(1, tier.FreshAllocations);
        tier.Return(again);
    }

    [Fact]
    public void TheReadAheadCopyEngineDeliversTheValues()
    {
        var device = TestDevice.Get();
        var notices = new List<string>();
        using var copier = AsyncChunkCopy.For(device, notice: notices.Add);
        // On a GPU the read-ahead must be the real side-stream copy through libcudart, not a fallback.
        if (device.type == DeviceType.CUDA) Assert.IsType<CudaChunkCopy>(copier);
        Assert.Empty(notices);
        foreach (bool pinned in device.type == DeviceType.CUDA ? new[] { true, false } : new[] { false })
        {
            using var source0 = rand(Elements, dtype: ScalarType.Float32);
            using var source = pinned ? source0.pin_memory() : source0.alias();
            using var destination = zeros(Elements, dtype: ScalarType.Float32, device: device);
            var copy = copier.Start(destination, source);
            copy.BeforeUse();
            using (var read = destination.cpu())
            using (var same = read.eq(source).all())
                Assert.True(same.item<bool>(), $"the {(pinned ? "pinned" : "pageable")} copy did not arrive before use");
            copy.Wait();
            Assert.True(copy.IsCompleted);
        }
    }

    [Fact]
    public void TheCudaSelfCheckSeesTheValues()
    {
        var device = TestDevice.Get();
        Assert.SkipUnless(device.type == DeviceType.CUDA, "a CUDA device only (PSTAR_TEST_DEVICE=cuda)");
        var runtime = Runtime.Cuda.CudaRuntimeLibrary.TryLoad(out string reason);
        Assert.True(runtime is not null, reason);
        foreach (bool pinned in new[] { true, false })
        {
            var result = CudaCopyCheck.Run(runtime!, device, 64L << 20, pinned);
            Assert.True(result.Equal, result.ToString());
        }
    }
}
