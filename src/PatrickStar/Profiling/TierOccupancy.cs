using PatrickStar.Chunks;
using PatrickStar.Memory;

namespace PatrickStar.Profiling;

/// <summary>An amount per tier (chunks or bytes).</summary>
public readonly record struct TierAmounts(long Device, long Host, long Disk)
{
    public long this[Tier tier] => tier switch
    {
        Tier.Device => Device,
        Tier.Host => Host,
        Tier.Disk => Disk,
        _ => throw new ArgumentOutOfRangeException(nameof(tier), tier, "unknown tier"),
    };

    public TierAmounts Add(Tier tier, long amount) => tier switch
    {
        Tier.Device => this with { Device = Device + amount },
        Tier.Host => this with { Host = Host + amount },
        Tier.Disk => this with { Disk = Disk + amount },
        _ => throw new ArgumentOutOfRangeException(nameof(tier), tier, "unknown tier"),
    };
}

/// <summary>Chunks and chunk bytes in each tier at one moment of a profile.</summary>
public sealed record TierOccupancyPoint(int Iteration, int Index, double TimeMs, TierAmounts Chunks, TierAmounts Bytes);

/// <summary>One stretch of time a chunk's payload spent in one tier (null: released, or not yet allocated).</summary>
public sealed record ResidencySpan(ChunkKind Kind, int Index, double FromMs, double ToMs, Tier? Tier);

/// <summary>
/// Where the chunks were, replayed from a profile's chunk events: per moment (chunks and bytes per tier, for the tiers
/// figure and the summary) and per chunk (spans in each tier, for the residency figure). Events up to a moment's time
/// count for it: the engine moves chunks for a moment before it records the moment.
/// </summary>
public static class TierOccupancy
{
    public static List<TierOccupancyPoint> PerMoment(Profile profile)
    {
        var where = new Dictionary<(ChunkKind, int), (Tier Tier, long Bytes)>();
        var chunks = new TierAmounts();
        var bytes = new TierAmounts();
        var points = new List<TierOccupancyPoint>(profile.Moments.Count);
        int next = 0;
        var events = profile.ChunkEvents;
        foreach (var m in profile.Moments)
        {
            for (; next < events.Count && events[next].TimeMs <= m.TimeMs; next++)
            {
                var e = events[next];
                var key = (e.Kind, e.Index);
                if (where.Remove(key, out var old))
                {
                    chunks = chunks.Add(old.Tier, -1);
                    bytes = bytes.Add(old.Tier, -old.Bytes);
                }
                if (e.To is Tier to)
                {
                    where[key] = (to, e.Bytes);
                    chunks = chunks.Add(to, 1);
                    bytes = bytes.Add(to, e.Bytes);
                }
            }
            points.Add(new TierOccupancyPoint(m.Iteration, m.Index, m.TimeMs, chunks, bytes));
        }
        return points;
    }

    /// <summary>Each chunk's stretches per tier, up to <paramref name="endMs"/>. Before its first event a chunk was where that
    /// event took it from; before an allocation nothing is known and no span is given.</summary>
    public static List<ResidencySpan> Spans(Profile profile, double endMs)
    {
        var byChunk = new Dictionary<(ChunkKind, int), List<ProfileChunkEvent>>();
        foreach (var e in profile.ChunkEvents)
        {
            if (!byChunk.TryGetValue((e.Kind, e.Index), out var list)) byChunk[(e.Kind, e.Index)] = list = new();
            list.Add(e);
        }
        var spans = new List<ResidencySpan>();
        foreach (var ((kind, index), events) in byChunk)
        {
            Tier? state = events[0].From;
            bool known = events[0].Type != ChunkEventType.Allocate;
            double since = 0;
            foreach (var e in events)
            {
                if (known && e.TimeMs > since) spans.Add(new ResidencySpan(kind, index, since, e.TimeMs, state));
                state = e.To;
                known = true;
                since = e.TimeMs;
            }
            if (endMs > since) spans.Add(new ResidencySpan(kind, index, since, endMs, state));
        }
        return spans;
    }
}
