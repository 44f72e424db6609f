using System.Diagnostics;

namespace PatrickStar.Tiers;

/// <summary>One chunk of a streamed group; <see cref="WriteBack"/> false for inputs the update only reads (a gradient).</summary>
public readonly record struct StreamedMember(ChunkFileStore Store, int Index, bool WriteBack = true);

/// <summary>Where a streamed pass spent its time: compute, blocked on reads, and in all.</summary>
public readonly record struct StreamedGroupsTimes(double ComputeSeconds, double WaitSeconds, double TotalSeconds);

/// <summary>
/// Streams N groups of disk-resident chunks (e.g. master, momentum and variance of chunk i) through the K buffers of a
/// <see cref="BufferPool"/>: while group i is updated, the reads of the following groups run on the I/O thread, as far
/// ahead as free buffers allow, and group i-1 is written behind. Host memory stays at K buffers whatever N is. With K at
/// least three groups' worth of buffers, read, compute and write overlap. Without overlap (to measure what it gains) each
/// group is read, updated and written before the next one is read.
/// </summary>
public static class StreamedGroups
{
    /// <summary>
    /// Runs <paramref name="update"/>(i, buffers of group i in member order) for i = 0..N-1, each after its reads completed,
    /// then writes back the members marked so. Returns once every write is on disk, unless <paramref name="waitForWrites"/>
    /// is false: then the last groups' writes go on behind the caller's next work (a later read of those chunks sees them:
    /// <see cref="IoWorker"/>). On an error the pool's lent buffers are not all returned: dispose the pool.
    /// </summary>
    /// <param name="overlap">False: no read ahead and no write behind (each group's writes are waited for).</param>
    public static StreamedGroupsTimes Run(IoWorker worker, BufferPool pool, IReadOnlyList<IReadOnlyList<StreamedMember>> groups,
                                          Action<int, IReadOnlyList<StagingBuffer>> update, bool overlap = true, bool waitForWrites = true)
    {
        int widest = groups.Count == 0 ? 0 : groups.Max(g => g.Count);
        if (widest > pool.Count)
            throw new ArgumentException($"A group of {widest} chunks needs at least {widest} buffers; the pool has {pool.Count}.", nameof(pool));
        long start = Stopwatch.GetTimestamp(), computeTicks = 0, waitTicks = 0;
        var reads = new ChunkRead[groups.Count][];
        int issued = 0;

        for (int i = 0; i < groups.Count; i++)
        {
            if (issued == i) reads[issued] = Issue(worker, pool, groups[issued++], wait: true)!;
            while (overlap && issued < groups.Count && Issue(worker, pool, groups[issued], wait: false) is { } ahead) reads[issued++] = ahead;

            long waitStart = Stopwatch.GetTimestamp();
            var buffers = reads[i].Select(r => r.Wait()).ToArray();
            long computeStart = Stopwatch.GetTimestamp();
            waitTicks += computeStart - waitStart;
            update(i, buffers);
            computeTicks += Stopwatch.GetTimestamp() - computeStart;

            for (int j = 0; j < buffers.Length; j++)
                worker.Evict(groups[i][j].Store, groups[i][j].Index, buffers[j], groups[i][j].WriteBack, pool.Return);
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

    /// <summary>Rents the group's buffers (all or none) and queues its reads; null if not <paramref name="wait"/> and too few are free.</summary>
    private static ChunkRead[]? Issue(IoWorker worker, BufferPool pool, IReadOnlyList<StreamedMember> group, bool wait)
    {
        var buffers = pool.TryRent(group.Count, wait ? Timeout.Infinite : 0);
        if (buffers is null) return null;
        var reads = new ChunkRead[group.Count];
        for (int j = 0; j < group.Count; j++) reads[j] = worker.Read(group[j].Store, group[j].Index, buffers[j]);
        return reads;
    }
}
