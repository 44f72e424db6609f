namespace PatrickStar.Memory;

/// <summary>What happens at a moment: a module's pre-forward or pre-backward hook, or the optimizer step.</summary>
public enum MomentKind { PreForward, PreBackward, OptimizerStep }

/// <summary>One operator boundary of an iteration.</summary>
/// <param name="Index">Position within the iteration, 0..M-1.</param>
/// <param name="Module">The module whose hook fired (for the optimizer step, whatever label the caller chose).</param>
public sealed record Moment(int Index, MomentKind Kind, string Module);

/// <summary>
/// What the warm-up iteration measured: the sequence of moments, the non-model memory seen at
/// each, and the moments at which each chunk was accessed. Built incrementally during warm-up,
/// then frozen by <see cref="Complete"/>; later iterations replay the same moments and use the
/// trace to plan placement (OPT eviction, per-moment device budget).
/// </summary>
/// <remarks>Not thread-safe: it is written and read by the training thread only.</remarks>
public sealed class MomentTrace
{
    private readonly List<Moment> _moments = new();
    private readonly List<long> _nonModel = new();
    // Per chunk, the moments it was accessed at. Moments only grow while recording, so appending
    // (and skipping a repeat of the last one) keeps each list sorted and duplicate-free.
    private readonly Dictionary<int, List<int>> _accesses = new();

    public bool IsComplete { get; private set; }

    public int MomentCount => _moments.Count;

    public IReadOnlyList<Moment> Moments => _moments;

    /// <summary>Starts the next moment of the warm-up iteration and returns its index.</summary>
    public int BeginMoment(MomentKind kind, string module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ThrowIfComplete();
        int index = _moments.Count;
        _moments.Add(new Moment(index, kind, module));
        _nonModel.Add(0);
        return index;
    }

    /// <summary>Records that <paramref name="chunkId"/> was accessed at the current moment.</summary>
    public void RecordAccess(int chunkId)
    {
        int current = CurrentMoment();
        if (!_accesses.TryGetValue(chunkId, out var list))
            _accesses[chunkId] = list = new List<int>();
        if (list.Count == 0 || list[^1] != current)
            list.Add(current);
    }

    /// <summary>Records non-model bytes observed during the current moment; the moment keeps the maximum.</summary>
    public void RecordNonModel(long bytes)
    {
        int current = CurrentMoment();
        // A negative figure can come from "total − chunk bytes" when the two readings race; it
        // means "nothing beyond the chunks", which the initial 0 already says.
        if (bytes > _nonModel[current]) _nonModel[current] = bytes;
    }

    /// <summary>Freezes the trace: the moment count is fixed from now on.</summary>
    public void Complete()
    {
        ThrowIfComplete();
        if (_moments.Count == 0)
            throw new InvalidOperationException("The warm-up iteration recorded no moments; there is nothing to plan with.");
        IsComplete = true;
    }

    /// <summary>
    /// Checks that moment <paramref name="momentIndex"/> of a later iteration is the same as in the
    /// warm-up. The plan is only valid for the exact moment sequence it was measured on, so a
    /// divergence (data-dependent control flow, a changed model) must fail loudly.
    /// </summary>
    public void CheckSameShape(int momentIndex, MomentKind kind, string module)
    {
        ThrowIfNotComplete();
        if (momentIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(momentIndex), momentIndex, "Moment indexes start at 0.");
        if (momentIndex >= _moments.Count)
            throw new InvalidOperationException(
                $"This iteration has more moments than the warm-up: moment {momentIndex} ({kind} '{module}') " +
                $"has no counterpart; the warm-up trace ended after {_moments.Count} moments, the last being " +
                $"{Describe(_moments[^1])}.");
        var traced = _moments[momentIndex];
        if (traced.Kind != kind || traced.Module != module)
            throw new InvalidOperationException(
                $"This iteration diverges from the warm-up trace at moment {momentIndex}: the warm-up had " +
                $"{Describe(traced)}, this iteration has {kind} '{module}'.");
    }

    /// <summary>Checks, at the end of a later iteration, that it had as many moments as the warm-up.</summary>
    public void CheckIterationLength(int momentsSeen)
    {
        ThrowIfNotComplete();
        if (momentsSeen != _moments.Count)
            throw new InvalidOperationException(
                $"This iteration had {momentsSeen} moments but the warm-up trace has {_moments.Count}; " +
                $"the warm-up's last moment was {Describe(_moments[^1])}.");
    }

    /// <summary>The largest non-model figure recorded during moment <paramref name="m"/>.</summary>
    public long NonModelAt(int m)
    {
        CheckMoment(m);
        return _nonModel[m];
    }

    /// <summary>
    /// The non-model memory to reserve at moment <paramref name="m"/>: the larger of this moment's
    /// and the next one's (wrapping to moment 0), because memory the next operator needs is
    /// allocated before the next moment's hook gets a chance to make room.
    /// </summary>
    public long PeakNonModelAround(int m)
    {
        ThrowIfNotComplete();
        CheckMoment(m);
        return Math.Max(_nonModel[m], _nonModel[(m + 1) % _moments.Count]);
    }

    /// <summary>The largest non-model figure of the whole iteration (0 when nothing was recorded).</summary>
    public long PeakNonModel => _nonModel.Count == 0 ? 0 : _nonModel.Max();

    /// <summary>The moments at which <paramref name="chunkId"/> was accessed, ascending (empty if never).</summary>
    public IReadOnlyList<int> AccessesOf(int chunkId) =>
        _accesses.TryGetValue(chunkId, out var list) ? list : Array.Empty<int>();

    /// <summary>
    /// How many moments after <paramref name="afterMoment"/> the chunk is next accessed, looking
    /// strictly later and wrapping into the next iteration (a chunk accessed only at
    /// <paramref name="afterMoment"/> is next used M moments later). <see cref="int.MaxValue"/>
    /// when the chunk is never accessed, so such chunks sort as "farthest".
    /// </summary>
    public int NextUse(int chunkId, int afterMoment)
    {
        ThrowIfNotComplete();
        CheckMoment(afterMoment);
        if (!_accesses.TryGetValue(chunkId, out var list) || list.Count == 0)
            return int.MaxValue;

        // First access strictly after afterMoment: BinarySearch gives the index of an exact match
        // (so step past it) or the complement of the insertion point.
        int i = list.BinarySearch(afterMoment);
        i = i >= 0 ? i + 1 : ~i;
        return i < list.Count
            ? list[i] - afterMoment
            : _moments.Count - afterMoment + list[0];
    }

    private int CurrentMoment()
    {
        ThrowIfComplete();
        if (_moments.Count == 0)
            throw new InvalidOperationException("No moment has begun yet; call BeginMoment first.");
        return _moments.Count - 1;
    }

    private void CheckMoment(int m)
    {
        if (m < 0 || m >= _moments.Count)
            throw new ArgumentOutOfRangeException(nameof(m), m, $"The trace has moments 0..{_moments.Count - 1}.");
    }

    private void ThrowIfComplete()
    {
        if (IsComplete) throw new InvalidOperationException("The moment trace is complete; it can no longer be recorded into.");
    }

    // Wrap-around queries need the final moment count; answering them from a partial trace would be silently wrong.
    private void ThrowIfNotComplete()
    {
        if (!IsComplete) throw new InvalidOperationException("The moment trace is still being recorded; call Complete first.");
    }

    private static string Describe(Moment m) => $"{m.Kind} '{m.Module}'";
}
