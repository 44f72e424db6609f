using PatrickStar.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>Where <see cref="HeadBlocks.Loss"/> puts the gradients: d/d(hidden) [N, h] (added) and d/dW [V, h] in fp32 (written over).</summary>
internal sealed record HeadGradients(Tensor Hidden, Tensor Weight);

/// <summary>The block loop of <see cref="BlockedHeadLoss"/>: per block of rows, the logits, their loss and their gradients.</summary>
internal static class HeadBlocks
{
    /// <summary>The dtype gradients are computed and kept in: the activations', except fp32 for fp16 (whose unscaled gradients would underflow).</summary>
    public static ScalarType GradientType(ScalarType activation) => activation == ScalarType.Float16 ? ScalarType.Float32 : activation;

    /// <summary>
    /// The mean loss over all rows (an fp32 scalar); with <paramref name="grads"/>, the gradients of that mean go into it
    /// (for bf16 activations and weight, a group of <paramref name="group"/> rows at a time: <see cref="HeadGroups"/>).
    /// </summary>
    public static Tensor Loss(Tensor x, Tensor w, Tensor targets, long rows, long group, HeadGradients? grads) =>
        grads is not null && HeadGroups.Applies(x.dtype, w.dtype)
            ? HeadGroups.Loss(x, w, targets, rows, group, grads)
            : FusedCrossEntropy.MeanOverBlocks(x.shape[0], rows, targets, (start, r, t) =>
        {
            var xb = x.narrow(0, start, r);
            var logits = Logits(xb, w);
            if (grads is null) return FusedCrossEntropy.BlockLossSum(logits, t, x.shape[0], overwrite: true, writeGradient: false);
            var loss = FusedCrossEntropy.LossSumWritingGradient(logits, t, x.shape[0]);
            AddGradients(logits, xb, w, grads.Hidden.narrow(0, start, r), grads.Weight, first: start == 0);
            return loss;
        });

    /// <summary>fp32 logits [r, V] of a block: the matmul in the activations' dtype, the weight upcast a slice at a time if it must be.</summary>
    private static Tensor Logits(Tensor xb, Tensor w)
    {
        var type = xb.dtype;
        if (w.dtype == type) return xb.mm(w.t()).to(ScalarType.Float32); // fp32: to() returns the product itself
        var logits = empty(new[] { xb.shape[0], w.shape[0] }, dtype: ScalarType.Float32, device: xb.device);
        ForEachSlice(w, type, (start, ws) =>
        {
            using var part = xb.mm(ws.t());
            using var into = logits.narrow(1, start, ws.shape[0]);
            into.copy_(part);
        });
        return logits;
    }

    /// <summary>
    /// From a block's logits' gradient g [r, V] (fp32): d(hidden) of the block = g·W and d(W) += gᵀ·x_block (summed in fp32;
    /// the <paramref name="first"/> block writes over what d(W) held), with the matmuls in the gradient dtype as the unblocked
    /// head's backward would run them. Products of the weight's size are made a slice at a time (or added in place), never whole.
    /// </summary>
    private static void AddGradients(Tensor g32, Tensor xb, Tensor w, Tensor dHidden, Tensor dWeight, bool first)
    {
        var type = dHidden.dtype;
        var g = g32.to(type);
        var x = xb.to(type);
        if (w.dtype == type && type == dWeight.dtype)
        {
            dHidden.addmm_(g, w);
            dWeight.addmm_(g.t(), x, beta: first ? 0 : 1); // beta 0: the old values are not read (not even a NaN)
            return;
        }
        ForEachSlice(w, type, (start, ws) =>
        {
            long s = ws.shape[0];
            using var gs = g.narrow(1, start, s);
            dHidden.addmm_(gs, ws);
            using var rows = dWeight.narrow(0, start, s);
            using var dw = gs.t().mm(x);
            if (first) rows.copy_(dw);
            else rows.add_(dw);
        });
    }

    /// <summary>
    /// Scales d/dW [V, h] (fp32, or bf16 where <see cref="HeadGroups"/> made it in one product; in place) by the loss's incoming gradient <paramref name="scale"/> (null: 1). For a weight
    /// stored in bf16 its values are rounded as a bf16 gradient scaled in bf16 would be, so that every consumer, whether it
    /// copies them into the bf16 slot or adds them to an fp32 accumulator, sees the gradient an unblocked head would give.
    /// With no scale the copy into the slot rounds alike; an fp16 weight's gradient is scaled in fp32 (fp16 would underflow).
    /// </summary>
    public static void ScaleWeightGradient(Tensor dWeight, Tensor? scale, ScalarType stored)
    {
        if (scale is null) return;
        if (stored != ScalarType.BFloat16 || dWeight.dtype == stored) // (a bf16 d/dW is scaled in bf16 as it stands)
        {
            dWeight.mul_(scale.to(dWeight.dtype));
            return;
        }
        using var factor = scale.to(stored);
        ForEachRowSlice(dWeight, (start, count) =>
        {
            using var scope = NewDisposeScope();
            var part = dWeight.narrow(0, start, count);
            part.copy_(part.to(stored).mul_(factor));
        });
    }

    /// <summary>Runs <paramref name="use"/> on (first row, rows) of each slice of <see cref="BlockedHeadLoss.SliceElements"/> of <paramref name="t"/> [V, h].</summary>
    public static void ForEachRowSlice(Tensor t, Action<long, long> use)
    {
        long v = t.shape[0], slice = Math.Max(1, BlockedHeadLoss.SliceElements / t.shape[1]);
        for (long start = 0; start < v; start += slice) use(start, Math.Min(slice, v - start));
    }

    /// <summary>Runs <paramref name="use"/> on each slice of vocabulary rows of <paramref name="w"/>, upcast to <paramref name="type"/>.</summary>
    private static void ForEachSlice(Tensor w, ScalarType type, Action<long, Tensor> use)
    {
        ForEachRowSlice(w, (start, count) =>
        {
            using var scope = NewDisposeScope();
            use(start, Mixed.Compute(w.narrow(0, start, count), type));
        });
    }
}
