using PatrickStar.Optimizer;
using PatrickStar.Tiers;
using Xunit;

namespace PatrickStar.Tests.Tiers;

public unsafe class StreamedGroupsTests
{
    private const int Groups = 5, Elements = 40_000; // 160,000 B per chunk: slots round up to 163,840

    [Theory]
    [InlineData(4, Elements * 4L)]  // one group's buffers: no overlap, still correct
    [InlineData(12, Elements * 4L)] // three groups': read ahead, update, write behind at once
    [InlineData(12, 40_960L)]       // slices of a quarter chunk (10,240 elements)
    [InlineData(4, 12_288L)]        // slices of 3,072 elements: the last of each chunk is shorter (64 elements)
    public void AdamOverDiskResidentStateIsBitIdenticalToAdamInMemory(int buffers, long bufferBytes)
    {
        var random = new Random(7);
        float[] Random(double scale) => Enumerable.Range(0, Groups * Elements).Select(_ => (float)((random.NextDouble() - 0.5) * scale)).ToArray();
        float[] master = Random(2), momentum = Random(0.1), variance = Random(0.01).Select(MathF.Abs).ToArray();
        float[][] grads = { Random(1), Random(1) };

        using var f = new TierFixture();
        string[] kinds = { "master", "momentum", "variance", "grad" };
        var stores = kinds.Select(k => f.Tier.CreateStore(k, Elements * 4L, Groups)).ToArray();
        Store(stores[0], master);
        Store(stores[1], momentum);
        Store(stores[2], variance);

        using var pool = new BufferPool(buffers, bufferBytes);
        long sliceElements = StreamedGroups.SliceElements(new[] { new StreamedMember(stores[0], 0) }, pool.BytesEach);
        int slicesPerChunk = (int)((Elements + sliceElements - 1) / sliceElements);
        using var worker = new IoWorker();
        var groups = Enumerable.Range(0, Groups).Select(i => (IReadOnlyList<StreamedMember>)
            stores.Select(s => new StreamedMember(s, i, WriteBack: s.Kind != "grad")).ToArray()).ToArray();
        for (int step = 1; step <= 2; step++)
        {
            var h = new AdamHyperparameters(1e-2, 0.9, 0.95, 1e-8, 0.1, DecoupledWeightDecay: true, Step: step);
            Store(stores[3], grads[step - 1]);
            StreamedGroups.Run(worker, pool, groups, (s, b) =>
                CpuAdamKernel.Step((float*)b[0].Pointer, (float*)b[1].Pointer, (float*)b[2].Pointer, b[3].Pointer, ElementType.Float32,
                                   null, ElementType.Float32, s.Elements, h));
            for (int i = 0; i < Groups; i++) // the same kernel over the same chunks in memory
                fixed (float* m = master, mo = momentum, v = variance, g = grads[step - 1])
                    CpuAdamKernel.Step(m + i * Elements, mo + i * Elements, v + i * Elements, g + i * Elements, ElementType.Float32,
                                       null, ElementType.Float32, Elements, h);
        }

        Assert.Equal(Bits(master), Bits(Load(stores[0])));
        Assert.Equal(Bits(momentum), Bits(Load(stores[1])));
        Assert.Equal(Bits(variance), Bits(Load(stores[2])));
        Assert.Equal(Bits(grads[1]), Bits(Load(stores[3])));
        Assert.Equal(2 * Groups * slicesPerChunk * 3, worker.Statistics.Writes); // gradients are read only: never written back
        Assert.Equal(2 * Groups * slicesPerChunk, worker.Statistics.CleanEvictionsSkipped);
        Assert.Equal(buffers, pool.FreeCount);
    }

    /// <summary>
    /// With slow writes (and slow reads) the update of group i runs while earlier groups are still being written (write
    /// behind) and later ones already read (read ahead), and the pass can return before its writes end; without overlap
    /// each group is read, updated and written before the next is read. Either way the disk ends up with every update.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WritesGoBehindTheUpdatesOnlyWithOverlap(bool overlap)
    {
        const int members = 2, groupCount = 4;
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { WriteDelayMs = 60, ReadDelayMs = 10 });
        var stores = new[] { f.Tier.CreateStore("master", Elements * 4L, groupCount), f.Tier.CreateStore("momentum", Elements * 4L, groupCount) };
        using var pool = new BufferPool(3 * members, Elements * 4L);
        using var worker = new IoWorker();
        var groups = Enumerable.Range(0, groupCount).Select(i => (IReadOnlyList<StreamedMember>)stores.Select(s => new StreamedMember(s, i)).ToArray()).ToArray();
        var seen = new List<(long Reads, long Writes)>();

        StreamedGroups.Run(worker, pool, groups, (slice, b) =>
        {
            seen.Add((worker.Statistics.Reads, worker.Statistics.Writes));
            foreach (var buffer in b) TierFixture.Fill(buffer, Elements * 4L, slice.Group + 10);
        }, overlap, waitForWrites: false);
        long writesAtReturn = worker.Statistics.Writes;
        worker.Flush();

        if (overlap)
        {
            Assert.Contains(seen.Skip(1), s => s.Writes < s.Reads - members); // some update ran while an earlier group was being written
            Assert.True(writesAtReturn < groupCount * members, $"{writesAtReturn} writes done when the pass returned");
        }
        else
        {
            Assert.Equal(Enumerable.Range(0, groupCount).Select(i => ((long)(i + 1) * members, (long)i * members)), seen);
            Assert.Equal(groupCount * members, writesAtReturn);
        }
        Assert.Equal(groupCount * members, worker.Statistics.Writes);
        for (int i = 0; i < groupCount; i++)
            foreach (var s in stores)
            {
                var buffer = worker.Read(s, i, pool.Rent()).Wait();
                Assert.True(TierFixture.Holds(buffer, Elements * 4L, i + 10), $"{s.Kind}#{i}");
                pool.Return(buffer);
            }
    }

    [Fact]
    public void AGroupWiderThanThePoolIsRefused()
    {
        using var f = new TierFixture();
        var store = f.Tier.CreateStore("master", 4096, 3);
        using var pool = new BufferPool(2, 4096);
        using var worker = new IoWorker();
        var group = new[] { new StreamedMember(store, 0), new StreamedMember(store, 1), new StreamedMember(store, 2) };
        var e = Assert.Throws<ArgumentException>(() => StreamedGroups.Run(worker, pool, new[] { group }, (_, _) => { }));
        Assert.StartsWith("A group of 3 chunks needs at least 3 buffers; the pool has 2.", e.Message);
    }

    private static int[] Bits(float[] values) => System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(values).ToArray();

    private static void Store(ChunkFileStore store, float[] values)
    {
        using var buffer = new StagingBuffer(store.SlotBytes);
        for (int i = 0; i < store.Chunks; i++)
        {
            values.AsSpan(i * Elements, Elements).CopyTo(buffer.AsSpan<float>(Elements));
            store.Write(i, buffer);
        }
    }

    private static float[] Load(ChunkFileStore store)
    {
        var values = new float[store.Chunks * Elements];
        using var buffer = new StagingBuffer(store.SlotBytes);
        for (int i = 0; i < store.Chunks; i++)
        {
            store.Read(i, buffer);
            buffer.AsSpan<float>(Elements).CopyTo(values.AsSpan(i * Elements, Elements));
        }
        return values;
    }
}
