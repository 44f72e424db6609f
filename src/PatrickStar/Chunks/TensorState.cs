namespace PatrickStar.Chunks;

/// <summary>The state of one tensor stored in a chunk.</summary>
public enum TensorState
{
    /// <summary>No meaningful data; its slot in the chunk may be dropped.</summary>
    Free,

    /// <summary>In use by an operator right now; its chunk must stay where it is.</summary>
    Compute,

    /// <summary>Holds valid data, not in use.</summary>
    Hold,

    /// <summary>Valid, not in use, and already used by the forward pass of this step.</summary>
    HoldAfterForward,

    /// <summary>Valid, not in use, and already used by the backward pass of this step.</summary>
    HoldAfterBackward,
}

/// <summary>The state of a chunk, derived from its payload and its tensors' states.</summary>
public enum ChunkState
{
    /// <summary>No payload is allocated.</summary>
    Released,

    /// <summary>A payload exists but no tensor in it holds meaningful data: it can be released.</summary>
    Free,

    /// <summary>At least one tensor is in use by an operator: the chunk may not move or be evicted.</summary>
    Compute,

    Hold,
    HoldAfterForward,
    HoldAfterBackward,
}

/// <summary>Derives chunk states from tensor states and says what a chunk in a state may undergo.</summary>
public static class ChunkStates
{
    /// <summary>
    /// The state of a chunk. Precedence, first match wins: <see cref="ChunkState.Released"/> (no payload,
    /// whatever the tensors say) › <see cref="ChunkState.Compute"/> (any tensor computes) ›
    /// <see cref="ChunkState.Free"/> (every tensor free, or no tensors at all, e.g. a padding chunk) ›
    /// <see cref="ChunkState.Hold"/> › <see cref="ChunkState.HoldAfterForward"/> ›
    /// <see cref="ChunkState.HoldAfterBackward"/>.
    /// </summary>
    /// <remarks>
    /// Among the hold states the chunk reports its <em>least advanced</em> tensor, in the order a training
    /// step moves a tensor through them (Hold → forward → HoldAfterForward → backward → HoldAfterBackward).
    /// A chunk half-way through forward (Hold and HoldAfterForward tensors) is still Hold; one half-way
    /// through backward (HoldAfterForward and HoldAfterBackward) is still HoldAfterForward. So a chunk is
    /// HoldAfterBackward exactly when backward has finished with every tensor that holds data — the moment
    /// its gradients may be reduced or offloaded — and it never claims to be done while a tensor is pending.
    /// PatrickStar ordered its hold states the same way.
    /// </remarks>
    public static ChunkState Derive(bool hasPayload, IEnumerable<TensorState> tensorStates)
    {
        ArgumentNullException.ThrowIfNull(tensorStates);
        if (!hasPayload)
            return ChunkState.Released;

        bool hold = false, afterForward = false, afterBackward = false;
        foreach (TensorState state in tensorStates)
        {
            switch (state)
            {
                case TensorState.Compute:
                    return ChunkState.Compute;
                case TensorState.Hold:
                    hold = true;
                    break;
                case TensorState.HoldAfterForward:
                    afterForward = true;
                    break;
                case TensorState.HoldAfterBackward:
                    afterBackward = true;
                    break;
            }
        }

        if (hold)
            return ChunkState.Hold;
        if (afterForward)
            return ChunkState.HoldAfterForward;
        if (afterBackward)
            return ChunkState.HoldAfterBackward;
        return ChunkState.Free;
    }

    /// <summary>
    /// Whether the chunk's payload may be moved to another device or evicted now: every state with a
    /// payload except <see cref="ChunkState.Compute"/> (an operator is reading or writing it in place).
    /// <see cref="ChunkState.Released"/> is not movable: there is nothing to copy and evicting it frees
    /// nothing, so eviction policies should not count it as a candidate.
    /// </summary>
    public static bool IsMovable(ChunkState state) => state is not (ChunkState.Compute or ChunkState.Released);

    /// <summary>Whether the payload may be dropped: only when no tensor holds meaningful data.</summary>
    public static bool IsReleasable(ChunkState state) => state == ChunkState.Free;
}

/// <summary>The legal tensor state transitions, and a check that explains a violation.</summary>
/// <remarks>
/// Legal: Free → Compute (first use: the payload is materialised) and Free → Hold (initialised with data);
/// Hold, HoldAfterForward, HoldAfterBackward → Compute (used by an operator);
/// Compute → HoldAfterForward / HoldAfterBackward (after forward / backward use) and Compute → Hold (used
/// outside training, e.g. evaluation, or by the optimizer); HoldAfterForward → Hold and
/// HoldAfterBackward → Hold (end of forward, after the optimizer step); every state but Compute → Free
/// (released). Staying in the same state is a legal no-op, except Compute → Compute: using a tensor
/// that is already in use means a missing release, and would let its chunk move under an operator.
/// </remarks>
public static class TensorTransitions
{
    private static readonly TensorState[][] LegalTargetsByState = BuildTable();

    private static TensorState[][] BuildTable()
    {
        var table = new TensorState[Enum.GetValues<TensorState>().Length][];
        table[(int)TensorState.Free] = [TensorState.Free, TensorState.Compute, TensorState.Hold];
        table[(int)TensorState.Compute] = [TensorState.Hold, TensorState.HoldAfterForward, TensorState.HoldAfterBackward];
        table[(int)TensorState.Hold] = [TensorState.Free, TensorState.Compute, TensorState.Hold];
        table[(int)TensorState.HoldAfterForward] =
            [TensorState.Free, TensorState.Compute, TensorState.Hold, TensorState.HoldAfterForward];
        table[(int)TensorState.HoldAfterBackward] =
            [TensorState.Free, TensorState.Compute, TensorState.Hold, TensorState.HoldAfterBackward];
        return table;
    }

    /// <summary>The states a tensor in state <paramref name="from"/> may move to, in enum order.</summary>
    public static IReadOnlyList<TensorState> LegalTargets(TensorState from) =>
        Array.AsReadOnly(LegalTargetsByState[Index(from)]);

    public static bool IsLegal(TensorState from, TensorState to) =>
        Array.IndexOf(LegalTargetsByState[Index(from)], to) >= 0;

    /// <summary>Throws <see cref="IllegalTensorTransitionException"/> unless the transition is legal.</summary>
    /// <param name="tensor">Name of the tensor, for the message.</param>
    /// <param name="chunk">Index of its chunk, for the message.</param>
    /// <param name="moment">When it happened (e.g. "forward of h.3.attn"), for the message.</param>
    public static void Check(TensorState from, TensorState to, string tensor, int chunk, string moment)
    {
        if (!IsLegal(from, to))
            throw new IllegalTensorTransitionException(from, to, tensor, chunk, moment, LegalTargets(from));
    }

    private static int Index(TensorState state) =>
        Enum.IsDefined(state)
            ? (int)state
            : throw new ArgumentOutOfRangeException(nameof(state), state, "Not a tensor state.");
}

/// <summary>A tensor was asked to change state in a way the chunk engine does not allow.</summary>
public sealed class IllegalTensorTransitionException : InvalidOperationException
{
    public IllegalTensorTransitionException(
        TensorState from, TensorState to, string tensor, int chunk, string moment, IReadOnlyList<TensorState> legalTargets)
        : base(BuildMessage(from, to, tensor, chunk, moment, legalTargets))
    {
        From = from;
        To = to;
        Tensor = tensor;
        Chunk = chunk;
        Moment = moment;
    }

    public TensorState From { get; }
    public TensorState To { get; }
    public string Tensor { get; }
    public int Chunk { get; }
    public string Moment { get; }

    private static string BuildMessage(
        TensorState from, TensorState to, string tensor, int chunk, string moment, IReadOnlyList<TensorState> legalTargets)
    {
        string hint = from == TensorState.Compute && to == TensorState.Compute
            ? " The tensor is already in use by an operator; it must be released (moved to a hold state) before it is used again."
            : "";
        return $"Illegal state change of tensor '{tensor}' (chunk {chunk}) at moment '{moment}': {from} -> {to}. " +
               $"From {from} a tensor may only go to: {string.Join(", ", legalTargets)}.{hint}";
    }
}
