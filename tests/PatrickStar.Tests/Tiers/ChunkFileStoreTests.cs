using PatrickStar.Tiers;
using Xunit;

namespace PatrickStar.Tests.Tiers;

public class ChunkFileStoreTests
{
    private const long ChunkBytes = 3 * 4096 + 100; // not a multiple of the block: the slot rounds up

    [Theory]
    [InlineData(DiskIoMode.Auto)]
    [InlineData(DiskIoMode.Buffered)]
    public void ChunksRoundTripThroughThePreallocatedFile(DiskIoMode mode)
    {
        using var f = new TierFixture(mode);
        var store = f.Tier.CreateStore("master", ChunkBytes, 5);
        Assert.Equal(4 * 4096, store.SlotBytes);
        Assert.Equal(5 * 4 * 4096, new FileInfo(store.FilePath).Length); // preallocated up front
        Assert.Equal(mode == DiskIoMode.Buffered ? false : f.Tier.Direct, store.Direct);
        Assert.Contains(f.Tier.Direct ? "O_DIRECT" : "buffered", f.Log.Single());

        using var buffer = new StagingBuffer(ChunkBytes);
        foreach (int i in new[] { 3, 0, 4 })
        {
            TierFixture.Fill(buffer, ChunkBytes, i);
            store.Write(i, buffer);
        }
        foreach (int i in new[] { 0, 4, 3 })
        {
            buffer.AsSpan<byte>(buffer.Capacity).Clear();
            store.Read(i, buffer);
            Assert.True(TierFixture.Holds(buffer, ChunkBytes, i), $"chunk {i} read back differs");
        }
    }

    [Fact]
    public void ExtFourTmpTakesODirectAndForcedBufferedDoesNot()
    {
        // This machine's /tmp is ext4 (O_DIRECT allowed); on a tmpfs /tmp the auto case falls back to buffered.
        using var auto = new TierFixture(DiskIoMode.Auto);
        using var buffered = new TierFixture(DiskIoMode.Buffered);
        Assert.False(buffered.Tier.Direct);
        Assert.Equal("disk tier: buffered I/O in " + buffered.Dir.Path + " (requested).", buffered.Log.Single());
        if (auto.Tier.Direct) Assert.Equal($"disk tier: O_DIRECT I/O in {auto.Dir.Path} (page cache bypassed).", auto.Log.Single());
        else Assert.Contains("refuses O_DIRECT (Invalid argument (errno 22))", auto.Log.Single());
    }

    [Fact]
    public void FilesAreRemovedOnDisposeAndTheBudgetBoundsTheStores()
    {
        using var dir = new TempDir();
        var tier = DiskTier.Open(new DiskTierOptions(dir.Path, 10 * 4096));
        tier.CreateStore("master", 4096, 6);
        var e = Assert.Throws<DiskTierRefusedException>(() => tier.CreateStore("momentum", 4096, 5));
        Assert.Equal("disk_memory is too small: the 5 'momentum' chunks need 20480 B on disk, 16384 B of the 40960 B budget are left; raise --disk-memory.", e.Message);
        Assert.Equal(2, Directory.GetFiles(dir.Path).Length); // the lock and master.chunks
        tier.Dispose();
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void AFullFilesystemAtPreallocationNamesTheChunksTheFileAndTheError()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { PreallocateError = 28 });
        var e = Assert.Throws<DiskIoException>(() => f.Tier.CreateStore("variance", 4096, 8));
        Assert.Equal(28, e.Errno);
        Assert.EndsWith("pstar-" + Environment.ProcessId + "-variance.chunks", e.FilePath);
        Assert.Equal($"disk tier: preallocation of 32768 B of chunk variance#0..7 in {e.FilePath} failed: No space left on device (errno 28); " +
                     "free space on that filesystem or point --disk-dir elsewhere.", e.Message);
    }
}
