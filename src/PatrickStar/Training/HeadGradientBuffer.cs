using PatrickStar.Runtime;
using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>
/// The LM head's weight gradient d(loss)/dW [V, h] (fp32, or bf16 where <see cref="HeadGroups"/> makes it in one product),
/// kept from step to step by the head that owns it. The blocked
/// loss writes it in forward (where the logits are) and hands it to the weight's gradient in backward. Made afresh in every
/// step instead, a temporary of the weight's size is touched afresh each time once freed large blocks go back to the
/// system: 56,900 page faults (0.55 s) per step on the 6-layer, hidden-768 bench model.
/// </summary>
public sealed class HeadGradientBuffer : IDisposable
{
    private Tensor? kept;
    private bool lent;

    /// <summary>
    /// The kept tensor (<paramref name="dtype"/>, <paramref name="shape"/>, on <paramref name="device"/>; its values are stale) until
    /// <see cref="GiveBack"/>; null while it is lent already (a second forward before the first one's backward makes its
    /// own temporary). A handle of the caller's dispose scope.
    /// </summary>
    internal Tensor? Lend(long[] shape, ScalarType dtype, Device device)
    {
        if (lent) return null;
        if (kept is null || !kept.shape.SequenceEqual(shape) || kept.dtype != dtype || kept.device_type != device.type || kept.device_index != device.index)
        {
            kept?.Dispose();
            kept = empty(shape, dtype: dtype, device: device).DetachFromDisposeScope();
        }
        lent = true;
        return kept.detach();
    }

    /// <summary>
    /// While lent, for a consumer that keeps <paramref name="gradient"/> as it is (the plain trainer makes it the fp32 weight's
    /// .grad, no copy): when it is the lent tensor, returns it (now the caller's) and keeps <paramref name="replacement"/> in its
    /// place (fp32, the same shape and device, unused by the caller from now on; null: a new one is made at the next lend).
    /// Null, and nothing changes, when <paramref name="gradient"/> is not the lent tensor.
    /// </summary>
    internal Tensor? HandOver(Tensor gradient, Tensor? replacement)
    {
        if (!lent || kept is null || !gradient.is_contiguous() || TensorMemory.DataPointer(gradient) != TensorMemory.DataPointer(kept))
            return null;
        var taken = kept;
        kept = replacement;
        return taken;
    }

    /// <summary>The backward that borrowed the tensor has handed its gradient over.</summary>
    internal void GiveBack() => lent = false;

    public void Dispose()
    {
        kept?.Dispose();
        kept = null;
    }
}
