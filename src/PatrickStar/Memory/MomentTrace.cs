namespace PatrickStar.Memory;

public enum MomentKind { PreForward, PreBackward, OptimizerStep }

/// <summary>One operator boundary of an iteration.</summary>
public sealed record Moment(int Index, MomentKind Kind, string Module);

/// <summary>
/// What the warm-up iteration measured: the moments in order, the non-model bytes seen during each
/// (the peak from that moment until the next), and the moments at which each chunk was used.
/// </summary>
public sealed class MomentTrace
{
    private readonly List<Moment> moments = new();
    private readonly List<long> nonModel = new();
    private readonly Dictionary<int, List<int>> accesses = new();
    private bool complete;

    public int MomentCount => moments.Count;
    public IReadOnlyList<Moment> Moments => moments;
    public bool IsComplete => complete;

    public int BeginMoment(MomentKind kind, string module)
    {
        if (complete) throw new InvalidOperationException("the trace is complete; later iterations are checked against it, not recorded.");
        moments.Add(new Moment(moments.Count, kind, module));
        nonModel.Add(0);
        return moments.Count - 1;
    }

    /// <summary>The chunk was used at the current moment.</summary>
    public void RecordAccess(int chunkId)
    {
        if (complete || moments.Count == 0) return;
        if (!accesses.TryGetValue(chunkId, out var list)) accesses[chunkId] = list = new List<int>();
        int m = moments.Count - 1;
        if (list.Count == 0 || list[^1] != m) list.Add(m);
    }

    /// <summary>Non-model bytes observed during the current moment (the maximum is kept).</summary>
    public void RecordNonModel(long bytes)
    {
        if (complete || moments.Count == 0) return;
        nonModel[^1] = Math.Max(nonModel[^1], bytes);
    }

    public void Complete() => complete = true;

    /// <summary>Throws when a later iteration does not follow the warm-up's sequence of moments.</summary>
    public void CheckSameShape(int momentIndex, MomentKind kind, string module)
    {
        if (momentIndex >= moments.Count)
            throw new InvalidOperationException($"moment {momentIndex} ({kind} of {module}) lies beyond the {moments.Count} moments the warm-up iteration traced; " +
                                                "every iteration must run the same modules in the same order.");
        var expected = moments[momentIndex];
        if (expected.Kind != kind || expected.Module != module)
            throw new InvalidOperationException($"moment {momentIndex} is {kind} of {module}, but the warm-up traced {expected.Kind} of {expected.Module} there; " +
                                                "every iteration must run the same modules in the same order.");
    }

    public long NonModelAt(int m) => nonModel[m];

    /// <summary>The reservation at moment m: the larger of its own and the next moment's non-model peak (wrapping).</summary>
    public long PeakNonModelAround(int m) => moments.Count == 0 ? 0 : Math.Max(nonModel[m], nonModel[(m + 1) % moments.Count]);

    public long PeakNonModel => nonModel.Count == 0 ? 0 : nonModel.Max();

    public IReadOnlyList<int> AccessesOf(int chunkId) => accesses.TryGetValue(chunkId, out var l) ? l : Array.Empty<int>();

    /// <summary>Moments from <paramref name="afterMoment"/> to the chunk's next use (wrapping into the next iteration); int.MaxValue if never used.</summary>
    public int NextUse(int chunkId, int afterMoment)
    {
        var list = AccessesOf(chunkId);
        if (list.Count == 0) return int.MaxValue;
        foreach (int m in list)
            if (m > afterMoment) return m - afterMoment;
        return moments.Count - afterMoment + list[0];
    }
}
