using PatrickStar.Memory;
using PatrickStar.Runtime;
using PatrickStar.Tiers;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Memory;

/// <summary>
/// Payloads of a tier beside a disk tier take a whole O_DIRECT read of their file slot: each starts on the alignment and
/// its allocation reaches at least to the slot's end (the chunk's bytes rounded up), so no staging buffer is needed.
/// </summary>
public sealed class AlignedPayloadTests
{
    public AlignedPayloadTests() => TorchRuntime.EnsureLoaded();

    [Theory]
    [InlineData(ScalarType.Float32, 1)]
    [InlineData(ScalarType.Float32, 4096)]
    [InlineData(ScalarType.Float32, 123_457)]
    [InlineData(ScalarType.BFloat16, 1_000_001)]
    public unsafe void PayloadsStartAlignedWithRoomForAWholeSlot(ScalarType dtype, long elements)
    {
        using var tier = new TierMemory(Tier.Host, CPU, 1L << 30) { PayloadAlignment = StagingBuffer.Alignment };
        long slot = StagingBuffer.RoundUp(TierMemory.Bytes(dtype, elements));
        Assert.Equal(slot, tier.SlotCapacity(dtype, elements));
        var payloads = Enumerable.Range(0, 3).Select(_ => tier.Acquire(dtype, elements, "test")).ToList();
        foreach (var p in payloads)
        {
            Assert.Equal(elements, p.numel());
            Assert.Equal(0, (long)TensorMemory.Address(p) % StagingBuffer.Alignment);
            Assert.True(TensorMemory.BytesFromStart(p) >= slot, $"{TensorMemory.BytesFromStart(p)} B from the start, a slot is {slot} B");
            tier.Return(p);
        }
        using var unaligned = new TierMemory(Tier.Host, CPU, 1L << 30);
        Assert.Equal(0, unaligned.SlotCapacity(dtype, elements)); // nothing beyond the elements may be written
    }

    [Fact]
    public void ABorrowedBufferMustBeAlignedWholeBlocks()
    {
        using var owner = new StagingBuffer(2 * StagingBuffer.Alignment);
        using (var borrowed = StagingBuffer.Borrow(owner.Address, owner.Capacity)) Assert.Equal(owner.Capacity, borrowed.Capacity);
        owner.AsSpan<byte>(1)[0] = 7; // disposing the borrowed view freed nothing
        Assert.Throws<ArgumentException>(() => StagingBuffer.Borrow(owner.Address + 64, StagingBuffer.Alignment));
        Assert.Throws<ArgumentException>(() => StagingBuffer.Borrow(owner.Address, StagingBuffer.Alignment + 512));
    }
}
