using PatrickStar.Hooks;
using PatrickStar.Timing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Training;

/// <summary>
/// The LM head and the mean next-token cross-entropy in one op, a block of rows at a time: logits = hidden·Wᵀ of a block
/// (in the activations' dtype), the loss in fp32, and, when training, the block's gradients at once. No tensor of the
/// logits' size [N, V] ever exists (training keeps a group's logits, at most <see cref="GroupBytes"/>), nor
/// (with a weight stored narrower than the activations) an upcast copy of the whole weight: it is upcast a slice of
/// vocabulary rows at a time.
/// </summary>
/// <remarks>
/// Forward computes d(loss)/d(hidden) [N, h] and d(loss)/dW [V, h] eagerly (as <see cref="FusedCrossEntropy"/> does for
/// the logits); backward only scales them by the incoming gradient and hands the weight's to its handler (the chunk
/// engine) through the same protocol as the ParameterOps functions. The caller runs it inside the head module's
/// forward (<c>.call</c>), so the chunk engine's forward hooks bring the weight to the device.
/// </remarks>
public static class BlockedHeadLoss
{
    /// <summary>fp32 elements of one block's logits: 32 MiB, large enough for efficient matmuls, small beside [N, V].</summary>
    public const long BlockElements = 1L << 23;

    /// <summary>Elements of one slice of the weight used apart: upcast (stored narrower than used) or its gradient's product in bf16.</summary>
    public const long SliceElements = 1L << 22;

    /// <summary>Rows of one block for a vocabulary of <paramref name="vocab"/> (the estimator uses it too).</summary>
    public static long BlockRows(long vocab) => Math.Max(1, BlockElements / vocab);

    /// <summary>
    /// Bytes of one group's logits (activations and weight of one dtype; see HeadGroups): 64 MiB, 2^25 logits in bf16, 2^24
    /// in fp32 (fp32, 512 rows, per head forward + backward: 0.92-0.93 s in 166-row blocks, 0.85-0.87 s in groups of 256,
    /// 0.81-0.82 s in one of 512 rows; the cap keeps the group within two 32 MiB fp32 blocks' bytes).
    /// </summary>
    public const long GroupBytes = 64L << 20;

    /// <summary>
    /// fp32 elements of one block's loss within a group: 8 MiB, so that its passes stay in the cache (the group's products
    /// do not depend on it; measured: half the CPU time of 32 MiB blocks).
    /// </summary>
    public const long GroupBlockElements = 1L << 21;

    /// <summary>Rows of one block within a group for a vocabulary of <paramref name="vocab"/>.</summary>
    public static long GroupBlockRows(long vocab) => Math.Max(1, GroupBlockElements / vocab);

    /// <summary>
    /// Rows of one group of logits of <paramref name="elementBytes"/> each: whole blocks of <paramref name="blockRows"/> (0:
    /// <see cref="GroupBlockRows"/>), as many as <paramref name="groupRows"/> rows hold (0: as <see cref="GroupBytes"/> hold), one at least.
    /// </summary>
    public static long GroupRows(long vocab, int elementBytes, long blockRows = 0, long groupRows = 0)
    {
        long rows = blockRows > 0 ? blockRows : GroupBlockRows(vocab);
        return rows * Math.Max(1, (groupRows > 0 ? groupRows : GroupBytes / elementBytes / vocab) / rows);
    }

    /// <summary>
    /// The mean cross-entropy (an fp32 scalar) of logits hidden·weightᵀ against <paramref name="targets"/>, for hidden
    /// [..., h], weight [V, h] and targets of hidden's leading shape. <paramref name="blockRows"/> 0: <see cref="BlockRows"/>.
    /// </summary>
    /// <param name="weightGradient">Where d/dW is written, kept across steps by the head (null: a temporary of this call).</param>
    /// <param name="groupRows">Rows per group of the grouped head's products (0: <see cref="GroupRows"/>'s default).</param>
    public static Tensor Mean(Tensor hidden, Parameter weight, Tensor targets, string module, long blockRows = 0, HeadGradientBuffer? weightGradient = null,
        long groupRows = 0)
    {
        long h = hidden.shape[^1];
        if (weight.dim() != 2 || weight.shape[1] != h || targets.numel() * h != hidden.numel())
            throw new ArgumentException($"the LM head's loss needs hidden [..., h], weight [V, h] and one target per row; got hidden " +
                                        $"[{string.Join(", ", hidden.shape)}], weight [{string.Join(", ", weight.shape)}], targets [{string.Join(", ", targets.shape)}].");
        using var timed = StepPhases.Begin(StepPhase.ForwardMatmul);
        using var scope = NewDisposeScope();
        var flat = hidden.reshape(-1, h);
        var t = targets.reshape(-1);
        long v = weight.shape[0];
        bool training = is_grad_enabled() && (flat.requires_grad || weight.requires_grad);
        bool grouped = training && HeadGroups.Applies(flat.dtype, weight.dtype);
        var blocking = new Blocking(blockRows > 0 ? blockRows : grouped ? GroupBlockRows(v) : BlockRows(v), GroupRows(v, (int)flat.element_size(), blockRows, groupRows));
        if (training)
            return Function.apply(flat, weight, t, module, blocking, weightGradient!)[0].MoveToOuterDisposeScope();
        using var _ = no_grad();
        return HeadBlocks.Loss(flat, weight, t, blocking.Rows, blocking.Group, null).MoveToOuterDisposeScope();
    }

    /// <summary>Rows per block of the fp32 loss, and per group of the grouped head's products (a multiple of Rows).</summary>
    private sealed record Blocking(long Rows, long Group);

    /// <summary>The gradients computed in forward: d/d(hidden), and d/dW in fp32 or bf16 (in <paramref name="Lender"/>'s kept tensor when not null).</summary>
    private sealed record HeldGradients(Tensor Hidden, Tensor Weight, HeadGradientBuffer? Lender);

    private sealed class Function : MultiTensorFunction<Function>
    {
        public override string Name => "PatrickStar.BlockedHeadLoss";

        public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
        {
            var (x, w, t, blocking, buffer) = ((Tensor)vars[0], (Parameter)vars[1], (Tensor)vars[2], (Blocking)vars[4], vars[5] as HeadGradientBuffer);
            ctx.save_data("w", new ParameterRef(w));
            ctx.save_data("module", vars[3]);
            ctx.save_data("x_dtype", x.dtype);
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var weightType = HeadGroups.WeightGradientType(x.dtype, w.dtype, x.shape[0], blocking.Group);
            var kept = buffer?.Lend(w.shape, weightType, x.device);
            // d/dW is written over by the first block: no pass to clear it.
            var grads = new HeadGradients(zeros(x.shape, dtype: HeadBlocks.GradientType(x.dtype), device: x.device),
                kept ?? empty(w.shape, dtype: weightType, device: x.device));
            var loss = HeadBlocks.Loss(x, w, t, blocking.Rows, blocking.Group, grads);
            // Wrapped (TorchSharp refuses tensors as data) and not saved for backward (no version check, no copy).
            ctx.save_data("grads", new HeldGradients(grads.Hidden.DetachFromDisposeScope(), grads.Weight.DetachFromDisposeScope(), kept is null ? null : buffer));
            return ParameterBackward.Outputs(ctx, loss.MoveToOuterDisposeScope());
        }

        public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
        {
            var w = ((ParameterRef)ctx.get_data("w")).Parameter;
            var held = (HeldGradients)ctx.get_data("grads");
            var xType = (ScalarType)ctx.get_data("x_dtype");
            var g = ParameterBackward.OutputGradient(ctx, grads);
            try
            {
                return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w }, new[] { 1 }, 6, [g, .. grads], () =>
                {
                    bool one = FusedCrossEntropy.IsOne(g);
                    Tensor Scaled(Tensor held) => (one ? held : held.mul_(g.to(held.dtype))).detach(); // a handle of this scope
                    // d/dW stays as made (fp32, or bf16 from one group): the weight's gradient takes it in, converting where its dtype differs.
                    HeadBlocks.ScaleWeightGradient(held.Weight, one ? null : g, w.dtype);
                    var results = new Tensor?[] { Scaled(held.Hidden).to(xType), held.Weight.detach(), null, null, null, null };
                    held.Hidden.Dispose(); // the storage lives on in the results
                    held.Weight.Dispose();
                    return results;
                });
            }
            finally
            {
                held.Lender?.GiveBack(); // the gradient has been added where it belongs (or handed to autograd, which copies it)
            }
        }
    }
}
