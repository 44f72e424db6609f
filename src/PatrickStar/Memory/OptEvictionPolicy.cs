namespace PatrickStar.Memory;

/// <summary>
/// Belady's optimal replacement, made possible by the warm-up trace: evict the chunk whose next use is
/// farthest in the future; chunks never used again go first; ties go to the smaller chunk id.
/// </summary>
public static class OptEvictionPolicy
{
    public static int? ChooseVictim(MomentTrace trace, int currentMoment, IEnumerable<int> evictableChunks)
    {
        int? best = null;
        int bestDistance = -1;
        foreach (int chunk in evictableChunks)
        {
            int d = trace.NextUse(chunk, currentMoment);
            if (d > bestDistance || (d == bestDistance && chunk < best))
            {
                best = chunk;
                bestDistance = d;
            }
        }
        return best;
    }

    /// <summary>Victims in OPT order until their bytes reach <paramref name="bytesNeeded"/> (or none are left).</summary>
    public static IReadOnlyList<int> ChooseVictims(MomentTrace trace, int currentMoment, IEnumerable<(int Chunk, long Bytes)> evictable, long bytesNeeded)
    {
        var remaining = evictable.ToDictionary(e => e.Chunk, e => e.Bytes);
        var chosen = new List<int>();
        long freed = 0;
        while (freed < bytesNeeded && remaining.Count > 0)
        {
            int victim = ChooseVictim(trace, currentMoment, remaining.Keys)!.Value;
            freed += remaining[victim];
            remaining.Remove(victim);
            chosen.Add(victim);
        }
        return chosen;
    }
}
