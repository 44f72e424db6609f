using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>
/// The block loop of <see cref="HeadBlocks"/> for activations and weight of one dtype (bf16 or fp32), with the products made
/// per group of blocks (<see cref="BlockedHeadLoss.GroupRows"/>): a group's logits [g, V] are one product, kept in that dtype
/// while each block's loss writes the block's gradient over them, and the group's d/d(hidden) and d/dW are then one product
/// each, as the unblocked head runs them. Per block instead (~166 rows for GPT-2's vocabulary), the products have a small
/// side and every block adds its d/dW product into the fp32 [V, h] sum: a pass over 4·V·h bytes and more per block.
/// When one group holds every row, d/dW is its product itself (in bf16 as the unblocked head gives it); otherwise bf16
/// groups are summed in fp32, fp32 groups in place.
/// </summary>
internal static class HeadGroups
{
    /// <summary>
    /// Whether the grouped loop runs: bf16 or fp32 activations with a weight of the same dtype (gradients in that dtype, the
    /// weight used as stored). Not fp16, whose gradients are kept in fp32, nor a weight stored narrower than it is used.
    /// </summary>
    public static bool Applies(ScalarType activation, ScalarType weight) =>
        activation is ScalarType.BFloat16 or ScalarType.Float32 && weight == activation;

    /// <summary>d/dW's dtype: the weight's when one group holds all <paramref name="n"/> rows (its product is the gradient), else fp32.</summary>
    public static ScalarType WeightGradientType(ScalarType activation, ScalarType weight, long n, long groupRows) =>
        Applies(activation, weight) && n <= groupRows ? weight : ScalarType.Float32;

    /// <summary>As <see cref="HeadBlocks.Loss"/> with gradients; <paramref name="group"/> is a multiple of <paramref name="rows"/>.</summary>
    public static Tensor Loss(Tensor x, Tensor w, Tensor targets, long rows, long group, HeadGradients grads)
    {
        long n = x.shape[0];
        Tensor? logits = null; // the current group's (out of the blocks' dispose scopes): made at its first block, used up at its last
        long first = 0;
        try
        {
            return FusedCrossEntropy.MeanOverBlocks(n, rows, targets, (start, r, t) =>
            {
                if (start % group == 0)
                {
                    first = start;
                    logits = x.narrow(0, start, Math.Min(group, n - start)).mm(w.t()).DetachFromDisposeScope();
                }
                // The gradient is rounded to the logits' dtype as the unblocked head's backward rounds it; an fp32 copy
                // of the block, if the tensor ops need one, is freed before the group's products (never beside a slice's product).
                var loss = FusedCrossEntropy.LossSumWritingGradient(logits!.narrow(0, start - first, r), t, n);
                long g = logits.shape[0];
                if (start + r == first + g)
                {
                    AddGradients(logits, x.narrow(0, first, g), w, grads.Hidden.narrow(0, first, g), grads.Weight, first == 0);
                    logits.Dispose();
                    logits = null;
                }
                return loss;
            });
        }
        finally
        {
            logits?.Dispose();
        }
    }

    /// <summary>A group's d(hidden) += g·W and d(W) (+)= gᵀ·x: into d/dW directly in its dtype, else a bf16 slice product at a time summed in fp32.</summary>
    private static void AddGradients(Tensor g, Tensor xg, Tensor w, Tensor dHidden, Tensor dWeight, bool first)
    {
        dHidden.addmm_(g, w);
        if (dWeight.dtype == g.dtype)
        {
            // In row slices (RowSlicedProduct: 1.6x faster in bf16); beta 0: the kept tensor's stale values are not read.
            RowSlicedProduct.AddTransposedA(dWeight, g, xg, beta: first ? 0 : 1);
            return;
        }
        HeadBlocks.ForEachRowSlice(dWeight, (start, count) =>
        {
            using var into = dWeight.narrow(0, start, count);
            using var part = g.narrow(1, start, count);
            using var dw = part.t().mm(xg);
            if (first) into.copy_(dw);
            else into.add_(dw);
        });
    }
}
