using System.Diagnostics;

namespace PatrickStar.Tiers;

/// <summary>One chunk of a streamed group; <see cref="WriteBack"/> false for inputs the update only reads (a gradient);
/// <see cref="ElementBytes"/> the width of its elements (slices cut every member of a group at the same elements).</summary>
public readonly record struct StreamedMember(ChunkFileStore Store, int Index, bool WriteBack = true, int ElementBytes = 4)
{
    public long Elements => Store.ChunkBytes / ElementBytes;

    /// <summary>The aligned byte range of the slot that holds elements [first, first + count).</summary>
    internal (long Offset, long Length) Range(long first, long count) => (first * ElementBytes, StagingBuffer.RoundUp(count * ElementBytes));
}

/// <summary>What an update gets: elements [<see cref="First"/>, <see cref="First"/> + <see cref="Elements"/>) of every
/// chunk of group <see cref="Group"/>, each at the start of its buffer.</summary>
public readonly record struct StreamedSlice(int Group, long First, long Elements);

/// <summary>Where a streamed pass spent its time: compute, blocked on reads, and in all.</summary>
public readonly record struct StreamedGroupsTimes(double ComputeSeconds, double WaitSeconds, double TotalSeconds);

/// <summary>
/// Streams N groups of disk-resident chunks (e.g. master, momentum and variance of chunk i) through the K buffers of a
/// <see cref="BufferPool"/>, in slices as large as one buffer holds: while slice s is updated, the reads of the following
/// slices run on the I/O thread, as far ahead as free buffers allow, and slice s-1 is written behind. Host memory stays at
/// K buffers whatever the number and the size of the chunks (an elementwise update such as Adam needs no more than a
/// slice at a time). With K at least three groups' worth of buffers, read, compute and write overlap. Without overlap (to
/// measure what it gains) each slice is read, updated and written before the next one is read.
/// </summary>
public static class StreamedGroups
{
    /// <summary>Bytes of one buffer of the optimizer's streamed slices unless set: 12 of them stay under 400 MiB, and a
    /// 32 MiB read or write is long enough to run at the disk's sequential speed.</summary>
    public const long DefaultSliceBytes = 32L << 20;

    /// <summary>Buffers of the chunk engine's optimizer pool: three slices in flight (read ahead, updated, written behind) of
    /// the four kinds that may be on disk (parameters, master, momentum, variance).</summary>
    public const int OptimizerBuffers = 3 * 4;

    /// <summary>
    /// Runs <paramref name="update"/>(slice, buffers of the slice in member order) over every slice of groups 0..N-1 in
    /// order, each after its reads completed, then writes back the members marked so. Returns once every write is on disk,
    /// unless <paramref name="waitForWrites"/> is false: then the last slices' writes go on behind the caller's next work (a
    /// later read of those chunks sees them: <see cref="IoWorker"/>). On an error the pool's lent buffers are not all
    /// returned: dispose the pool.
    /// </summary>
    /// <param name="overlap">False: no read ahead and no write behind (each group's writes are waited for).</param>
    public static StreamedGroupsTimes Run(IoWorker worker, BufferPool pool, IReadOnlyList<IReadOnlyList<StreamedMember>> groups,
                                          Action<StreamedSlice, IReadOnlyList<StagingBuffer>> update, bool overlap = true, bool waitForWrites = true)
    {
        int widest = groups.Count == 0 ? 0 : groups.Max(g => g.Count);
        if (widest > pool.Count)
            throw new ArgumentException($"A group of {widest} chunks needs at least {widest} buffers; the pool has {pool.Count}.", nameof(pool));
        var slices = Slices(groups, pool.BytesEach);
        long start = Stopwatch.GetTimestamp(), computeTicks = 0, waitTicks = 0;
        var reads = new ChunkRead[slices.Count][];
        int issued = 0;

        for (int i = 0; i < slices.Count; i++)
        {
            if (issued == i) reads[issued] = Issue(worker, pool, groups, slices[issued++], wait: true)!;
            while (overlap && issued < slices.Count && Issue(worker, pool, groups, slices[issued], wait: false) is { } ahead) reads[issued++] = ahead;

            long waitStart = Stopwatch.GetTimestamp();
            var buffers = reads[i].Select(r => r.Wait()).ToArray();
            long computeStart = Stopwatch.GetTimestamp();
            waitTicks += computeStart - waitStart;
            update(slices[i], buffers);
            computeTicks += Stopwatch.GetTimestamp() - computeStart;

            var group = groups[slices[i].Group];
            for (int j = 0; j < buffers.Length; j++)
            {
                var (offset, length) = group[j].Range(slices[i].First, slices[i].Elements);
                worker.Evict(group[j].Store, group[j].Index, offset, length, buffers[j], group[j].WriteBack, pool.Return);
            }
            reads[i] = null!;
            if (!overlap) waitTicks += Flushed(worker);
        }
        if (overlap && waitForWrites) waitTicks += Flushed(worker);
        double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;
        return new StreamedGroupsTimes(Seconds(computeTicks), Seconds(waitTicks), Seconds(Stopwatch.GetTimestamp() - start));
    }

    /// <summary>Waits for every queued write; returns the ticks it waited.</summary>
    private static long Flushed(IoWorker worker)
    {
        long start = Stopwatch.GetTimestamp();
        worker.Flush();
        return Stopwatch.GetTimestamp() - start;
    }

    /// <summary>
    /// Elements per slice of a group whose buffers hold <paramref name="bufferBytes"/>: as many as the widest member's
    /// buffer holds, cut so that every member's slice starts on a 4096-byte boundary (O_DIRECT).
    /// </summary>
    public static long SliceElements(IReadOnlyList<StreamedMember> group, long bufferBytes)
    {
        int widest = group.Max(m => m.ElementBytes);
        long align = group.Max(m => StagingBuffer.Alignment / (long)System.Numerics.BigInteger.GreatestCommonDivisor(StagingBuffer.Alignment, m.ElementBytes));
        long elements = bufferBytes / widest / align * align;
        if (elements == 0)
            throw new ArgumentException($"A {bufferBytes} B buffer cannot hold an aligned slice ({align} elements of {widest} B).", nameof(bufferBytes));
        return elements;
    }

    private static List<StreamedSlice> Slices(IReadOnlyList<IReadOnlyList<StreamedMember>> groups, long bufferBytes)
    {
        var slices = new List<StreamedSlice>();
        for (int g = 0; g < groups.Count; g++)
        {
            if (groups[g].Count == 0) continue;
            long elements = groups[g][0].Elements;
            if (groups[g].Any(m => m.Elements != elements))
                throw new ArgumentException($"The chunks of group {g} differ in length: {string.Join(", ", groups[g].Select(m => m.Elements))} elements.", nameof(groups));
            long step = SliceElements(groups[g], bufferBytes);
            for (long first = 0; first < elements; first += step) slices.Add(new StreamedSlice(g, first, Math.Min(step, elements - first)));
        }
        return slices;
    }

    /// <summary>Rents the slice's buffers (all or none) and queues its reads; null if not <paramref name="wait"/> and too few are free.</summary>
    private static ChunkRead[]? Issue(IoWorker worker, BufferPool pool, IReadOnlyList<IReadOnlyList<StreamedMember>> groups,
                                      StreamedSlice slice, bool wait)
    {
        var group = groups[slice.Group];
        var buffers = pool.TryRent(group.Count, wait ? Timeout.Infinite : 0);
        if (buffers is null) return null;
        var reads = new ChunkRead[group.Count];
        for (int j = 0; j < group.Count; j++)
        {
            var (offset, length) = group[j].Range(slice.First, slice.Elements);
            reads[j] = worker.Read(group[j].Store, group[j].Index, offset, length, buffers[j]);
        }
        return reads;
    }
}
