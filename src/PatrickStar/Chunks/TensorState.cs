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
