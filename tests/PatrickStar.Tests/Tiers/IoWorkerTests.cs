using PatrickStar.Tiers;
using Xunit;

namespace PatrickStar.Tests.Tiers;

public class IoWorkerTests
{
    private const long ChunkBytes = 8 * 4096;

    [Fact]
    public async Task ASlowReadIsNeverVisibleBeforeItCompleted()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { ReadDelayMs = 300 });
        var store = f.Tier.CreateStore("param", ChunkBytes, 3);
        using var pool = new BufferPool(3, ChunkBytes);
        WriteChunks(store, 0, 1);
        using var worker = new IoWorker();

        var first = worker.Read(store, 0, pool.Rent());
        var second = worker.Read(store, 1, pool.Rent()); // queued behind the first
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
        Assert.Equal("The read of chunk param#0 has not completed; Wait() for it first.",
                     Assert.Throws<InvalidOperationException>(() => first.Buffer).Message);

        Assert.True(TierFixture.Holds(first.Wait(), ChunkBytes, 0)); // half the buffer arrives 300 ms before the rest
        Assert.True(worker.Statistics.ConsumerWaitSeconds >= 0.2, $"waited {worker.Statistics.ConsumerWaitSeconds} s");
        Assert.True(TierFixture.Holds(await second, ChunkBytes, 1));
        Assert.Equal(2 * ChunkBytes, worker.Statistics.BytesRead);
    }

    [Fact]
    public void AReadOfAChunkWithAPendingWriteSeesTheWrittenData()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { ReadDelayMs = 300 });
        var store = f.Tier.CreateStore("master", ChunkBytes, 4);
        using var pool = new BufferPool(4, ChunkBytes);
        using var worker = new IoWorker();

        var busy = worker.Read(store, 0, pool.Rent()); // keeps the I/O thread busy so the write below stays queued
        var evicted = pool.Rent();
        TierFixture.Fill(evicted, ChunkBytes, 2);
        worker.Evict(store, 2, evicted, dirty: true, pool.Return);
        var early = worker.Read(store, 2, pool.Rent());
        Assert.True(early.IsCompleted); // served from the queued write, no disk read
        Assert.True(TierFixture.Holds(early.Buffer, ChunkBytes, 2));
        Assert.Equal(1, worker.Statistics.ReadsServedFromPendingWrites);

        busy.Wait();
        worker.Flush();
        Assert.Equal(ChunkBytes, worker.Statistics.BytesWritten);
        var late = worker.Read(store, 2, pool.Rent()); // now from the file
        Assert.True(TierFixture.Holds(late.Wait(), ChunkBytes, 2));
        Assert.Equal(2, f.Files[0].ReadCount); // the slow read and this one: the early read never touched the file
    }

    [Fact]
    public void AReadOfAChunkWhileItsSlowWriteRunsIsServedFromTheWritesBuffer()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { WriteDelayMs = 400 });
        var store = f.Tier.CreateStore("param", ChunkBytes, 2);
        WriteChunks(store, 1); // the old contents on disk
        using var pool = new BufferPool(3, ChunkBytes);
        using var worker = new IoWorker();

        var evicted = pool.Rent();
        TierFixture.Fill(evicted, ChunkBytes, 5);
        worker.Evict(store, 1, evicted, dirty: true, pool.Return); // written behind: returns at once
        Assert.True(SpinWait.SpinUntil(() => f.Files[0].WriteCount == 2, 5000)); // the write has started: half the slot is on disk
        Assert.Equal(0, worker.Statistics.Writes);
        var read = worker.Read(store, 1, pool.Rent());
        Assert.True(read.IsCompleted); // served from the write's buffer, not from the half-written file
        Assert.True(TierFixture.Holds(read.Buffer, ChunkBytes, 5));
        Assert.Equal(1, worker.Statistics.ReadsServedFromPendingWrites);

        worker.Flush();
        Assert.Equal(ChunkBytes, worker.Statistics.BytesWritten);
        Assert.True(TierFixture.Holds(worker.Read(store, 1, pool.Rent()).Wait(), ChunkBytes, 5)); // and the file holds it
    }

    [Fact]
    public void ACleanEvictionIsNotWritten()
    {
        using var f = new TierFixture();
        var store = f.Tier.CreateStore("param", ChunkBytes, 2);
        WriteChunks(store, 0);
        using var pool = new BufferPool(1, ChunkBytes);
        using var worker = new IoWorker();
        var buffer = worker.Read(store, 0, pool.Rent()).Wait();
        TierFixture.Fill(buffer, ChunkBytes, 9); // changed but declared clean: the disk copy must stay
        worker.Evict(store, 0, buffer, dirty: false, pool.Return);
        Assert.Equal(1, pool.FreeCount);
        worker.Flush();
        Assert.Equal(1, f.Files[0].WriteCount); // only WriteChunks' own write
        Assert.Equal((0L, 1L), (worker.Statistics.Writes, worker.Statistics.CleanEvictionsSkipped));
        Assert.True(TierFixture.Holds(worker.Read(store, 0, pool.Rent()).Wait(), ChunkBytes, 0));
    }

    [Fact]
    public void AWriteFailureStopsTheRunNamingTheChunkTheFileAndTheOsError()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { FailWriteNumber = 2, Errno = 28 });
        var store = f.Tier.CreateStore("momentum", ChunkBytes, 4);
        using var pool = new BufferPool(3, ChunkBytes);
        using var worker = new IoWorker();
        for (int i = 0; i < 3; i++) worker.Evict(store, i, pool.Rent(), dirty: true, pool.Return);

        var e = Assert.Throws<DiskIoException>(worker.Flush);
        Assert.Equal(("write", "momentum#1", store.FilePath, 28), (e.Operation, e.Chunk, e.FilePath, e.Errno));
        Assert.Equal($"disk tier: write of chunk momentum#1 in {store.FilePath} failed: No space left on device (errno 28); " +
                     "free space on that filesystem or point --disk-dir elsewhere.", e.Message);
        Assert.Equal(3, pool.FreeCount); // every buffer came back, the one after the failure unwritten
        Assert.Equal(2, f.Files[0].WriteCount);
        Assert.Same(e, Assert.Throws<DiskIoException>(() => worker.Read(store, 0, pool.Rent())));
    }

    [Fact]
    public void AReadFailureReachesTheConsumer()
    {
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { FailReadNumber = 1 });
        var store = f.Tier.CreateStore("variance", ChunkBytes, 2);
        using var pool = new BufferPool(2, ChunkBytes);
        using var worker = new IoWorker();
        var read = worker.Read(store, 1, pool.Rent());
        var e = Assert.Throws<DiskIoException>(() => read.Wait());
        Assert.Equal($"disk tier: read of chunk variance#1 in {store.FilePath} failed: Input/output error (errno 5); " +
                     "check the device (dmesg) or point --disk-dir elsewhere.", e.Message);
        Assert.Same(e, Assert.Throws<DiskIoException>(() => read.Buffer));
    }

    [Fact]
    public void ABufferTooSmallForTheChunkIsRefusedAtTheCallNotOnTheIoThread()
    {
        using var f = new TierFixture();
        var store = f.Tier.CreateStore("param", ChunkBytes, 2);
        using var small = new StagingBuffer(ChunkBytes - 4096);
        using var full = new StagingBuffer(ChunkBytes);
        using var worker = new IoWorker();
        worker.Evict(store, 1, full, dirty: true, _ => { });
        Assert.StartsWith("A 28672 B buffer cannot hold chunk param#1 (32768 B).",
                          Assert.Throws<ArgumentException>(() => worker.Read(store, 1, small)).Message);
        Assert.Throws<ArgumentException>(() => worker.Evict(store, 0, small, dirty: true, _ => { }));
        Assert.Throws<ArgumentOutOfRangeException>(() => worker.Read(store, 2, full));
        worker.Flush(); // the worker is not faulted
    }

    private static void WriteChunks(ChunkFileStore store, params int[] indices)
    {
        using var buffer = new StagingBuffer(store.SlotBytes);
        foreach (int i in indices)
        {
            TierFixture.Fill(buffer, ChunkBytes, i);
            store.Write(i, buffer);
        }
    }
}
