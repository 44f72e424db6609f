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

    /// <summary>The backward that borrowed the tensor has handed its gradient over.</summary>
    internal void GiveBack() => lent = false;

    public void Dispose()
    {
        kept?.Dispose();
        kept = null;
    }
}
