using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Training;

/// <summary>
/// Mean cross-entropy over rows of logits [N, V] with integer targets [N], in fp32 arithmetic whatever the logits' dtype,
/// computed in blocks of rows so that no fp32 tensor of the logits' size ever exists. Model-agnostic (any LM head).
/// </summary>
/// <remarks>
/// The unfused form (upcast the logits, log_softmax, nll) holds an fp32 copy of the logits and the fp32 log-probabilities
/// over backward, and backward makes three more logits-sized buffers (nll's gradient, log_softmax's, the downcast), with
/// an exp pass in forward and another in backward. Here, when the logits need a gradient, forward computes it at once,
/// block by block while the block is in cache: softmax − one-hot, over N, written over the logits themselves (the loss
/// is their only reader), and backward only scales it by the incoming gradient. Without a gradient (evaluation) the
/// logits are left untouched.
/// </remarks>
public static class FusedCrossEntropy
{
    /// <summary>Elements of one block's fp32 temporaries: a few MiB, so that a block stays in the cache between its passes.</summary>
    private const long BlockElements = 1L << 21;

    /// <summary>
    /// The mean loss (an fp32 scalar). When <paramref name="logits"/> requires a gradient, its values are overwritten with
    /// the gradient of the mean loss: the caller must not read them afterwards.
    /// </summary>
    public static Tensor Mean(Tensor logits, Tensor targets)
    {
        if (logits.dim() != 2 || targets.dim() != 1 || targets.shape[0] != logits.shape[0])
            throw new ArgumentException($"cross-entropy needs logits [N, V] and targets [N]; got [{string.Join(", ", logits.shape)}] and [{string.Join(", ", targets.shape)}].");
        if (!logits.requires_grad || !is_grad_enabled())
        {
            using var _ = no_grad();
            return Blocks(logits, targets, writeGradient: false);
        }
        return Function.apply(logits, targets)[0];
    }

    /// <summary>Sums the loss over all rows block by block (and, when asked, writes each block's gradient over its logits); returns the mean.</summary>
    private static Tensor Blocks(Tensor logits, Tensor targets, bool writeGradient) =>
        MeanOverBlocks(logits.shape[0], Math.Max(1, BlockElements / logits.shape[1]), targets, (start, r, t) =>
        {
            var block = logits.narrow(0, start, r);
            if (writeGradient) return LossSumWritingGradient(block, t, logits.shape[0]);
            using var x = block.to(ScalarType.Float32);
            return BlockLossSum(x, t, logits.shape[0], overwrite: false, writeGradient: false);
        });

    /// <summary>
    /// The summed loss of a block of logits [r, V] in any dtype, whose values become the gradient of the mean over
    /// <paramref name="n"/> rows (in their dtype): by <see cref="CrossEntropyKernel"/> where it applies, else in fp32 tensor
    /// ops on the block (fp32 logits in place; others through an fp32 copy, freed before this returns).
    /// </summary>
    internal static Tensor LossSumWritingGradient(Tensor block, Tensor t, long n)
    {
        if (CrossEntropyKernel.Applies(block, t)) return CrossEntropyKernel.LossSumWritingGradient(block, t, n);
        using var x = block.to(ScalarType.Float32); // fp32 logits: to() returns them, worked on in place
        var loss = BlockLossSum(x, t, n, overwrite: true, writeGradient: true);
        block.copy_(x); // the same tensor for fp32: libtorch skips the copy
        return loss;
    }

    /// <summary>
    /// The mean over <paramref name="n"/> rows (an fp32 scalar) of the losses <paramref name="blockLossSum"/> sums per block of
    /// <paramref name="rows"/> rows, given (first row, rows, the block's targets [r, 1]); each block's temporaries are freed after it.
    /// </summary>
    internal static Tensor MeanOverBlocks(long n, long rows, Tensor targets, Func<long, long, Tensor, Tensor> blockLossSum)
    {
        using var scope = NewDisposeScope();
        var total = zeros(1, dtype: ScalarType.Float64, device: targets.device);
        for (long start = 0; start < n; start += rows)
        {
            using var blockScope = NewDisposeScope();
            long r = Math.Min(rows, n - start);
            var t = targets.narrow(0, start, r).unsqueeze(1);
            total.add_(blockLossSum(start, r, t).to(ScalarType.Float64));
        }
        return total.div_(n).to(ScalarType.Float32).squeeze().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The summed loss of one block of fp32 logits [r, V] with targets [r, 1] (an fp32 scalar). With
    /// <paramref name="writeGradient"/>, <paramref name="x"/> becomes d(mean loss over <paramref name="n"/> rows)/dx =
    /// (softmax(x) − one_hot(target)) / n; with <paramref name="overwrite"/> only, its values are spoiled; otherwise kept.
    /// </summary>
    internal static Tensor BlockLossSum(Tensor x, Tensor t, long n, bool overwrite, bool writeGradient)
    {
        // softmax as torch computes it (shift by the row maximum, exp, divide by the sum), so that results agree to rounding.
        var max = x.amax(new long[] { 1 }, keepdim: true);
        var shifted = overwrite ? x.sub_(max) : x - max; // never in place on the caller's logits unless allowed
        var picked = shifted.gather(1, t);
        var sum = shifted.exp_().sum(1, keepdim: true);
        var loss = (sum.log() - picked).sum();
        if (writeGradient)
        {
            shifted.mul_(sum.mul_(n).reciprocal_());
            shifted.scatter_add_(1, t, full(new long[] { x.shape[0], 1 }, -1.0 / n, dtype: ScalarType.Float32, device: x.device));
        }
        return loss;
    }

    /// <summary>An incoming gradient of 1 (a plain loss.backward()) needs no scaling pass; reading it costs a device sync, so only on the CPU.</summary>
    internal static bool IsOne(Tensor g) => g.device.type == DeviceType.CPU && g.item<float>() == 1f;

    private sealed record GradientHolder(Tensor Gradient);

    private sealed class Function : MultiTensorFunction<Function>
    {
        public override string Name => "PatrickStar.FusedCrossEntropy";

        public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
        {
            var (logits, targets) = ((Tensor)vars[0], (Tensor)vars[1]);
            using var _ = no_grad();
            var loss = Blocks(logits, targets, writeGradient: true);
            // The gradient now lives in the logits' storage: keep a handle to it, wrapped (TorchSharp refuses tensors as data)
            // and not saved for backward (no version check: the values were meant to change).
            ctx.save_data("gradient", new GradientHolder(logits.detach().DetachFromDisposeScope()));
            return new List<Tensor> { loss };
        }

        public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grad_outputs)
        {
            var gradient = ((GradientHolder)ctx.get_data("gradient")).Gradient;
            var g = grad_outputs.Count > 0 ? grad_outputs[0] : null;
            if (g is not null && !g.IsInvalid)
            {
                if (!IsOne(g))
                    using (no_grad()) gradient.mul_(g.to(gradient.dtype));
            }
            PatrickStar.Hooks.BackwardHandles.Release(grad_outputs);
            return PatrickStar.Hooks.BackwardHandles.Return(new List<Tensor> { gradient, null! });
        }
    }
}
