using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Runtime;
using PatrickStar.Tests.Engine;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Memory;

/// <summary>The host tier of a GPU engine page-locks its buffers (cudaHostRegister through a fake runtime): once each, until freed.</summary>
public sealed class PinnedHostBufferTests
{
    private static readonly Device Gpu = new(DeviceType.CUDA, 0);

    public PinnedHostBufferTests() => TorchRuntime.EnsureLoaded();

    private static (long InUse, long Pooled, long Peak, long Fresh) Accounting(TierMemory t) => (t.InUseBytes, t.PooledBytes, t.PeakInUseBytes, t.FreshAllocations);

    [Fact]
    public void EveryFreshBufferIsRegisteredOnceAndUnregisteredOnceWhenFreedWithTheBudgetUnchanged()
    {
        var fake = new FakeCudaRuntime();
        var pinning = new HostPinning(fake);
        using var pinned = new TierMemory(Tier.Host, CPU, 1L << 20) { Pinning = pinning };
        using var plain = new TierMemory(Tier.Host, CPU, 1L << 20);
        var shapes = new[] { (ScalarType.Float32, 1000L), (ScalarType.BFloat16, 5001L), (ScalarType.Float32, 1000L) };

        var held = new List<(Tensor Pinned, Tensor Plain)>();
        foreach (var (dtype, n) in shapes) held.Add((pinned.Acquire(dtype, n, "test"), plain.Acquire(dtype, n, "test")));
        Assert.Equal(3, fake.Count("HostRegister"));
        Assert.Equal(Accounting(plain), Accounting(pinned));
        int page = HostPinning.PageSize;
        foreach (var (p, _) in held)
        {
            long address = TensorMemory.DataPointer(p);
            long bytes = TierMemory.Bytes(p.dtype, p.numel());
            Assert.Equal(0, address % page);
            Assert.Equal((long)Math.Ceiling(bytes / (double)page) * page, (long)fake.Registered[(nint)address]);
            Assert.True(TensorMemory.BytesFromStart(p) >= (long)fake.Registered[(nint)address], "the registered pages belong to the buffer");
            Assert.True(pinning.Covers(p));
        }

        // Pooled buffers stay pinned: handing one out again registers nothing.
        pinned.Return(held[0].Pinned);
        plain.Return(held[0].Plain);
        var again = pinned.Acquire(ScalarType.Float32, 1000, "test");
        var againPlain = plain.Acquire(ScalarType.Float32, 1000, "test");
        Assert.Equal(3, fake.Count("HostRegister"));
        Assert.Equal(0, fake.Count("HostUnregister"));
        Assert.Equal(Accounting(plain), Accounting(pinned));

        pinned.Return(again);
        plain.Return(againPlain);
        foreach (var (p, q) in held.Skip(1))
        {
            pinned.Return(p);
            plain.Return(q);
        }
        long keep = TierMemory.Bytes(ScalarType.BFloat16, 5001); // the fp32 buffers are freed (pooled first), the bf16 one stays
        pinned.Trim(keep);
        plain.Trim(keep);
        Assert.Equal(Accounting(plain), Accounting(pinned));
        Assert.Equal(2, fake.Count("HostUnregister"));
        Assert.Single(fake.Registered);
        pinned.Dispose();
        Assert.Equal(3, fake.Count("HostUnregister"));
        Assert.Empty(fake.Registered);
    }

    [Fact]
    public void OnlyAGpuEngineWithACudaRuntimePins()
    {
        var fake = new FakeCudaRuntime();
        Assert.Null(HostPinning.For(CPU, () => fake));
        Assert.Null(HostPinning.For(Gpu, () => null)); // libcudart missing: pageable
        Assert.NotNull(HostPinning.For(Gpu, () => fake));
        Assert.Empty(fake.Log);
    }

    [Fact]
    public void AFailedRegistrationLeavesBuffersPageableAfterOneWarning()
    {
        var fake = new FakeCudaRuntime { FailWith = "HostRegister" };
        var warnings = new List<string>();
        var pinning = new HostPinning(fake, warnings.Add);
        using var tier = new TierMemory(Tier.Host, CPU, 1L << 20) { Pinning = pinning };
        var a = tier.Acquire(ScalarType.Float32, 256, "test");
        var b = tier.Acquire(ScalarType.Float32, 512, "test");
        using (no_grad()) a.fill_(3f); // usable as a plain buffer
        Assert.Equal(3f, a[255].item<float>());
        Assert.Equal(1, fake.Count("HostRegister")); // not tried again
        var warning = Assert.Single(warnings);
        Assert.Contains("cudaHostRegister of 4,096 bytes failed (cudaErrorInvalidValue, error 1)", warning);
        Assert.False(pinning.Covers(a));
        tier.Return(a);
        tier.Return(b);
        tier.Trim();
        Assert.Equal(0, fake.Count("HostUnregister"));
    }

    [Fact]
    public void TheReadAheadSeesPinnedTierBuffersAsStillReadAfterTheCopyIsIssued()
    {
        var fake = new FakeCudaRuntime { RunOnComputeWait = false };
        var pinning = new HostPinning(fake);
        using var tier = new TierMemory(Tier.Host, CPU, 1L << 20) { Pinning = pinning };
        var source = tier.Acquire(ScalarType.Float32, 64, "test");
        using var pageable = zeros(64, dtype: ScalarType.Float32);
        using var destination = zeros(64, dtype: ScalarType.Float32);
        using (var copier = AsyncChunkCopy.For(Gpu, () => (fake, ""), _ => { }, isPinned: pinning.Covers))
        {
            var fromPinned = copier.Start(destination, source);
            Assert.False(fromPinned.SourceRead); // a DMA from page-locked memory is still reading it
            fake.Progress();
            Assert.True(fromPinned.SourceRead);
            Assert.True(copier.Start(destination, pageable).SourceRead); // pageable: staged by CUDA before the call returned
        }
        tier.Return(source);
    }
}
