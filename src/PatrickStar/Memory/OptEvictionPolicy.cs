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

    private static bool IsBetterVictim(int nextUse, int chunk, int bestNextUse, int bestChunk) =>
        nextUse > bestNextUse || (nextUse == bestNextUse && chunk < bestChunk);
}
