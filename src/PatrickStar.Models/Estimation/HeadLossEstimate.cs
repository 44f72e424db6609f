using PatrickStar.Config;
using PatrickStar.Training;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// Non-model bytes of the blocked LM head + loss (<see cref="BlockedHeadLoss"/>), the same for every family: no tensor of
/// the logits' size beyond one bf16 group's; its forward makes the gradients at once and keeps them until the head's backward.
/// </summary>
public static class HeadLossEstimate
{
    /// <summary>Kept from the head's forward to its backward: d/d(hidden) [t, h] and the weight's gradient [v, h] as made.</summary>
    public static long Kept(long t, long h, long v, Precision p) =>
        t * h * ActivationModel.ActivationBytes(p) + v * h * (p == Precision.Bf16 ? Bf16WeightGradientBytes(t, v) : ActivationModel.ParameterBytes(p));

    /// <summary>
    /// Bytes of one element of the bf16 head's weight gradient as forward makes it: bf16 where one group holds every row
    /// (the group's product is the gradient), otherwise fp32 (summed over groups).
    /// </summary>
    private static long Bf16WeightGradientBytes(long t, long v) => OneGroup(t, v) ? 2 : 4;

    private static bool OneGroup(long t, long v) => t <= BlockedHeadLoss.GroupRows(v, elementBytes: 2);

    /// <summary>
    /// The head's forward peak above what the model kept before it: d/d(hidden), the weight's gradient (fp32 except a
    /// one-group bf16 head's), and the larger of one block's or group's temporaries and (bf16 storage, fp32 compute) the
    /// gradient's bf16 copy.
    /// </summary>
    /// <remarks>
    /// Temporaries (r = a block's rows, g = a group's): fp32 — a group's fp32 logits, whose gradient is written over them (4·g·v).
    /// bf16 — a group's bf16 logits (g rows: 2·g·v), which become their gradient, beside one (smaller) block's fp32 copy (none
    /// with the host kernel) or,
    /// summing d/dW over groups, one weight slice's bf16 gradient product.
    /// bf16 storage, fp32 compute — the fp32 logits, and beside them, while they are made, one upcast weight slice and its
    /// product with the block; while the gradients are made, one upcast slice and its gradient product.
    /// </remarks>
    /// <param name="hostKernel">The loss runs in <see cref="CrossEntropyKernel"/> (host memory): a bf16 block's loss then needs no
    /// fp32 copy. Off (the tensor ops' need, an upper bound on every device) where the device is not known.</param>
    public static long ForwardPeak(long t, long h, long v, Precision p, bool hostKernel = false)
    {
        long e = ActivationModel.ActivationBytes(p), ep = ActivationModel.ParameterBytes(p);
        if (p == Precision.Fp32) // one group's fp32 logits, the loss writing their gradient over them in place
            return t * h * e + 4 * v * h + 4 * Math.Min(t, BlockedHeadLoss.GroupRows(v, elementBytes: 4)) * v;
        long rows = Math.Min(t, BlockedHeadLoss.BlockRows(v));
        long slice = Math.Min(v * h, BlockedHeadLoss.SliceElements);
        if (p == Precision.Bf16)
        {
            long group = Math.Min(t, BlockedHeadLoss.GroupRows(v, elementBytes: 2)), lossRows = Math.Min(t, BlockedHeadLoss.GroupBlockRows(v));
            return t * h * e + v * h * Bf16WeightGradientBytes(t, v) + 2 * group * v + Math.Max(hostKernel ? 0 : 4 * lossRows * v, OneGroup(t, v) ? 0 : slice * e);
        }
        long block = 4 * rows * v + (ep != e ? Math.Max(4 * rows * (slice / h) + slice * e, 2 * slice * e) : 0);
        return t * h * e + 4 * v * h + Math.Max(block, ep != 4 ? v * h * ep : 0);
    }
}
