using static TorchSharp.torch;

namespace PatrickStar.Chunks;

/// <summary>What a parameter's slot in the compute-precision chunk holds.</summary>
public enum SlotContent
{
    /// <summary>The weight (as the fp32 master has it).</summary>
    Weight,

    /// <summary>Gradient contributions wait in an fp32 side tensor: a later backward still reads the weight.</summary>
    WeightWithPendingGradient,

    /// <summary>The gradient (PatrickStar's reuse: no backward left reads the weight).</summary>
    Gradient,
}

/// <summary>
/// One parameter's gradient over a step: forward counts its uses (and the uses whose backward reads its value),
/// backward counts the contributions down, and the gradient takes the parameter's slot once no backward left reads
/// the weight. Shared (tied) weights are used more than once, so every count matters.
/// </summary>
public sealed class ParameterGradient : IDisposable
{
    private int forwardUses, valueUses;               // counted by the forward pass now running
    private int expected, contributionsLeft, valueReadsLeft; // of the backward pass now running
    private Tensor? pending;
    private bool inSlot;

    public SlotContent Content => inSlot ? SlotContent.Gradient : pending is not null ? SlotContent.WeightWithPendingGradient : SlotContent.Weight;

    /// <summary>Every contribution of the running backward has arrived (or none was expected).</summary>
    public bool AllArrived => contributionsLeft == 0;

    public void CountForwardUse(bool readsValue)
    {
        forwardUses++;
        if (readsValue) valueUses++;
    }

    /// <summary>Backward begins: the uses forward counted are the contributions to expect.</summary>
    public void BeginBackward()
    {
        expected = forwardUses;
        contributionsLeft = forwardUses;
        valueReadsLeft = valueUses;
        valueUses = 0;
        forwardUses = 0;
    }

    /// <summary>Counts one contribution in; true when it must wait aside, because a later backward still reads the weight.</summary>
    public bool Arrive(bool backwardReadsValue)
    {
        if (backwardReadsValue) valueReadsLeft--;
        bool last = contributionsLeft <= 1;
        contributionsLeft--;
        return !last && valueReadsLeft > 0;
    }

    /// <summary>Keeps a contribution aside in fp32 until the weight is no longer read.</summary>
    public void HoldAside(Tensor gradient)
    {
        if (pending is null) pending = gradient.to(ScalarType.Float32, copy: true).DetachFromDisposeScope();
        else pending.add_(gradient);
    }

    /// <summary>
    /// The contribution, with any kept aside, into the slot (<paramref name="slot"/> is the parameter itself): copied over
    /// the weight the first time, added after (the tied embedding's lookup adds to the projection's gradient).
    /// </summary>
    public void IntoSlot(Tensor slot, Tensor gradient)
    {
        var total = gradient;
        if (pending is not null) total = pending.add_(gradient);
        if (inSlot) slot.add_(total);
        else slot.copy_(total);
        inSlot = true;
        DropPending();
    }

    /// <summary>
    /// As <see cref="IntoSlot"/> for a contribution given as rows (gradient[indices[i]] += rows[i], rows in the slot's dtype):
    /// added in place, so that no dense table of the parameter's size is built.
    /// </summary>
    public void RowsIntoSlot(Tensor slot, Tensor indices, Tensor rows)
    {
        if (pending is not null)
        {
            if (inSlot) slot.add_(pending);
            else slot.copy_(pending);
        }
        else if (!inSlot) slot.zero_();
        slot.index_add_(0, indices, rows, 1);
        inSlot = true;
        DropPending();
    }

    /// <summary>The slot received its gradient from elsewhere (the owner's averaged gradients).</summary>
    public void MarkInSlot() => inSlot = true;

    /// <summary>The slot holds the weight again (restored from the master, or updated).</summary>
    public void Clear() => inSlot = false;

    /// <summary>Backward is over: throws when only some contributions arrived; drops what was kept aside.</summary>
    public void EndBackward(string name)
    {
        if (contributionsLeft != 0 && contributionsLeft != expected)
            throw new InvalidOperationException($"parameter {name} received {expected - contributionsLeft} of its gradient contributions.");
        DropPending();
    }

    private void DropPending()
    {
        pending?.Dispose();
        pending = null;
    }

    public void Dispose() => DropPending();
}
