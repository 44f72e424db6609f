using PatrickStar.Config;
using PatrickStar.Training;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// Non-model bytes of the blocked LM head + loss (<see cref="BlockedHeadLoss"/>), the same for every family: no tensor of
/// the logits' size; its forward makes the gradients at once and keeps them until the head's backward.
/// </summary>
public static class HeadLossEstimate
{
    /// <summary>Kept from the head's forward to its backward: d/d(hidden) [t, h] and the weight's gradient [v, h] in its storage dtype.</summary>
    public static long Kept(long t, long h, long v, Precision p) =>
        t * h * ActivationModel.ActivationBytes(p) + v * h * ActivationModel.ParameterBytes(p);

    /// <summary>
    /// The head's forward peak above what the model kept before it: d/d(hidden), the weight's gradient summed in fp32, and
    /// the larger of one block's temporaries and (bf16 storage) the gradient's bf16 copy made at the end.
    /// </summary>
    /// <remarks>
    /// One block's temporaries (r = its rows): fp32 — the fp32 logits, whose gradient is written over them (4·r·v).
    /// bf16 — the bf16 logits, their fp32 copy and the bf16 gradient (8·r·v), plus one weight slice's bf16 gradient product.
    /// bf16 storage, fp32 compute — the fp32 logits, and beside them, while they are made, one upcast weight slice and its
    /// product with the block; while the gradients are made, one upcast slice and its gradient product.
    /// </remarks>
    public static long ForwardPeak(long t, long h, long v, Precision p)
    {
        long e = ActivationModel.ActivationBytes(p), ep = ActivationModel.ParameterBytes(p);
        long rows = Math.Min(t, BlockedHeadLoss.BlockRows(v));
        long slice = Math.Min(v * h, BlockedHeadLoss.SliceElements);
        long block = e != 4 ? 8 * rows * v + slice * e
            : 4 * rows * v + (ep != e ? Math.Max(4 * rows * (slice / h) + slice * e, 2 * slice * e) : 0);
        return t * h * e + 4 * v * h + Math.Max(block, ep != 4 ? v * h * ep : 0);
    }
}
