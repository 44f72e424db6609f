namespace PatrickStar.Memory;

/// <summary>
/// Belady's optimal (OPT) eviction: the warm-up trace tells when every chunk is needed next, so
/// evict the chunk needed farthest in the future. Chunks never accessed go first; ties go to the
/// smaller chunk id so that runs are deterministic.
/// </summary>
public static class OptEvictionPolicy
{
    /// <summary>The best chunk to evict at <paramref name="currentMoment"/>, or null when none is evictable.</summary>
    public static int? ChooseVictim(MomentTrace trace, int currentMoment, IEnumerable<int> evictableChunks)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(evictableChunks);

        int? victim = null;
        int victimNextUse = 0;
        foreach (int chunk in evictableChunks)
        {
            int nextUse = trace.NextUse(chunk, currentMoment);
            if (victim is not { } v || IsBetterVictim(nextUse, chunk, victimNextUse, v))
            {
                victim = chunk;
                victimNextUse = nextUse;
            }
        }
        return victim;
    }

    /// <summary>
    /// Chunks to evict, in OPT order, until their bytes reach <paramref name="bytesNeeded"/>. Returns
    /// as many as it could; the caller decides whether the freed bytes suffice. A chunk listed
    /// twice counts once.
    /// </summary>
    public static IReadOnlyList<int> ChooseVictims(
        MomentTrace trace, int currentMoment, IEnumerable<(int Chunk, long Bytes)> evictable, long bytesNeeded)
    {
        ArgumentNullException.ThrowIfNull(trace);
        ArgumentNullException.ThrowIfNull(evictable);
        if (bytesNeeded <= 0) return Array.Empty<int>();

        var ordered = evictable
            .DistinctBy(e => e.Chunk)
            .Select(e => (e.Chunk, e.Bytes, NextUse: trace.NextUse(e.Chunk, currentMoment)))
            .OrderByDescending(e => e.NextUse)
            .ThenBy(e => e.Chunk);

        var victims = new List<int>();
        long freed = 0;
        foreach (var e in ordered)
        {
            victims.Add(e.Chunk);
            freed += e.Bytes;
            if (freed >= bytesNeeded) break;
        }
        return victims;
    }

    private static bool IsBetterVictim(int nextUse, int chunk, int bestNextUse, int bestChunk) =>
        nextUse > bestNextUse || (nextUse == bestNextUse && chunk < bestChunk);
}
