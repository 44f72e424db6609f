using System.Diagnostics;
using PatrickStar.Optimizer;
using PatrickStar.Tiers;

namespace PatrickStar.Benchmarks;

/// <summary>Sequential bandwidth of one I/O mode through the disk tier (store + I/O thread).
/// <see cref="FlushSeconds"/>: buffered only, fdatasync of what the writes left in the page cache.</summary>
public sealed record DiskBandwidth(bool Direct, long FileBytes, long ChunkBytes, double WriteSeconds, double FlushSeconds, double ReadSeconds)
{
    public double WriteBytesPerSecond => FileBytes / (WriteSeconds + FlushSeconds);
    public double ReadBytesPerSecond => FileBytes / ReadSeconds;
}

/// <summary>One Adam step streamed from disk by <see cref="StreamedGroups"/>: where the time went.</summary>
public sealed record StreamedAdamFigures(bool Direct, long Elements, int Groups, int Buffers, long BufferBytes,
                                         StreamedGroupsTimes Times, double IoSeconds, long BytesRead, long BytesWritten)
{
    /// <summary>Seconds compute and I/O ran at the same time: compute + I/O - total.</summary>
    public double OverlappedSeconds => Math.Max(0, Times.ComputeSeconds + IoSeconds - Times.TotalSeconds);

    /// <summary>The part of the shorter of compute and I/O that ran under the other: 1 when total = max(compute, I/O),
    /// 0 when they ran one after the other.</summary>
    public double Overlap => Math.Min(1, OverlappedSeconds / Math.Max(1e-9, Math.Min(Times.ComputeSeconds, IoSeconds)));
}

/// <summary>Measures the disk tier on this machine's disk (not a test: figures depend on the machine and its load).</summary>
public static class DiskTierBenchmark
{
    /// <summary>Writes then reads a <paramref name="fileBytes"/> file in <paramref name="chunkBytes"/> chunks, through the
    /// I/O thread with four buffers in flight. In buffered mode the file's pages are flushed and dropped from the page cache
    /// before the read, so both modes read from the disk.</summary>
    public static DiskBandwidth Sequential(string directory, DiskIoMode mode, long fileBytes, long chunkBytes)
    {
        int chunks = checked((int)(fileBytes / chunkBytes));
        using var tier = DiskTier.Open(new DiskTierOptions(directory, chunks * StagingBuffer.RoundUp(chunkBytes)) { IoMode = mode });
        var store = tier.CreateStore("bandwidth", chunkBytes, chunks);
        using var pool = new BufferPool(4, chunkBytes);
        using var worker = new IoWorker();

        var clock = Stopwatch.StartNew();
        for (int i = 0; i < chunks; i++) worker.Evict(store, i, pool.Rent(), dirty: true, pool.Return);
        worker.Flush();
        double write = clock.Elapsed.TotalSeconds, flush = store.Direct ? 0 : FlushAndDropCache(store.FilePath);

        clock.Restart();
        var reads = new Queue<ChunkRead>();
        for (int i = 0; i < chunks; i++)
        {
            if (reads.Count == pool.Count) pool.Return(reads.Dequeue().Wait());
            reads.Enqueue(worker.Read(store, i, pool.Rent()));
        }
        while (reads.Count > 0) pool.Return(reads.Dequeue().Wait());
        return new DiskBandwidth(store.Direct, (long)chunks * store.SlotBytes, chunkBytes, write, flush, clock.Elapsed.TotalSeconds);
    }

    /// <summary>One AdamW step over <paramref name="elements"/> fp32 elements whose master, momentum, variance and gradient
    /// live on disk in chunks of <paramref name="chunkElements"/>, streamed through <paramref name="buffers"/> host buffers.</summary>
    public static unsafe StreamedAdamFigures StreamedAdam(string directory, DiskIoMode mode, long elements, long chunkElements, int buffers)
    {
        int groups = checked((int)(elements / chunkElements));
        long chunkBytes = chunkElements * sizeof(float);
        string[] kinds = { "master", "momentum", "variance", "grad" };
        using var tier = DiskTier.Open(new DiskTierOptions(directory, kinds.Length * groups * StagingBuffer.RoundUp(chunkBytes)) { IoMode = mode });
        var stores = kinds.Select(k => tier.CreateStore(k, chunkBytes, groups)).ToArray();
        using (var fill = new StagingBuffer(chunkBytes)) // state and gradient values (not timed): small, positive variance
        {
            var values = fill.AsSpan<float>(chunkElements);
            for (int i = 0; i < values.Length; i++) values[i] = 1e-3f * (i % 1000 + 1);
            foreach (var store in stores)
                for (int g = 0; g < groups; g++) store.Write(g, fill);
        }
        foreach (var store in stores.Where(s => !s.Direct)) FlushAndDropCache(store.FilePath);

        using var pool = new BufferPool(buffers, chunkBytes);
        using var worker = new IoWorker();
        var members = Enumerable.Range(0, groups).Select(g => (IReadOnlyList<StreamedMember>)
            stores.Select(s => new StreamedMember(s, g, WriteBack: s.Kind != "grad")).ToArray()).ToArray();
        var h = new AdamHyperparameters(1e-3, 0.9, 0.999, 1e-8, 0.01, DecoupledWeightDecay: true, Step: 1);
        var times = StreamedGroups.Run(worker, pool, members, (_, b) =>
            CpuAdamKernel.Step((float*)b[0].Pointer, (float*)b[1].Pointer, (float*)b[2].Pointer, b[3].Pointer, ElementType.Float32,
                               null, ElementType.Float32, chunkElements, h));
        var s = worker.Statistics;
        return new StreamedAdamFigures(stores[0].Direct, groups * chunkElements, groups, buffers, pool.BytesEach, times, s.IoSeconds, s.BytesRead, s.BytesWritten);
    }

    /// <summary>fdatasync the file and drop its pages from the page cache; returns the seconds the sync took.</summary>
    private static double FlushAndDropCache(string path)
    {
        var clock = Stopwatch.StartNew();
        int fd = LibC.Open(path, LibC.O_RDWR | LibC.O_CLOEXEC, 0);
        if (fd < 0) return 0;
        LibC.FDataSync(fd);
        double seconds = clock.Elapsed.TotalSeconds;
        LibC.PosixFadvise(fd, 0, 0, LibC.POSIX_FADV_DONTNEED);
        LibC.Close(fd);
        return seconds;
    }
}
