using PatrickStar.Hooks;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Training;

/// <summary>
/// softmax(scale · scores + causal mask) over the last dimension of square score matrices [N, T, T], differentiable, by
/// <see cref="CausalSoftmaxKernel"/> (host memory only; the caller falls back to the masked tensor ops elsewhere).
/// Why not libtorch's softmax over −inf-masked scores: in some processes its bf16 form runs 10-20x slower for minutes at
/// a time (0.6 → 5-20 ms for 24 × 256 rows of 256, both threads busy, the time in Sleef's exp), a state this kernel
/// has not shown (docs/measurements/session10).
/// </summary>
public static class CausalSoftmax
{
    /// <summary>Off: callers take the masked tensor ops instead (tests and benchmarks compare the two).</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>Whether the kernel takes these scores: host memory, [N, T, T], fp32, bf16 or fp16.</summary>
    public static bool Applies(ScalarType dtype, Device device) =>
        Enabled && device.type == DeviceType.CPU && dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>The probabilities [N, T, T] (zeros above each diagonal) of <paramref name="scores"/>; only where <see cref="Applies"/>.</summary>
    public static Tensor Apply(Tensor scores, double scale)
    {
        if (scores.dim() != 3 || scores.shape[1] != scores.shape[2])
            throw new ArgumentException($"causal softmax needs square score matrices [N, T, T]; got [{string.Join(", ", scores.shape)}].");
        return Function.apply(scores, scale);
    }

    // One thread, the caller's: right after the score product libtorch's OpenMP workers still spin on the other cores,
    // and .NET workers beside them made the kernel slower, not faster (forward 0.65-0.73 ms on two, 0.62-0.66 on one;
    // backward 0.39-1.5 against 0.23-0.24; 24 × 256 rows of 256).
    private const int Threads = 1;

    private sealed class Function : SingleTensorFunction<Function>
    {
        public override string Name => "PatrickStar.CausalSoftmax";

        public override unsafe Tensor forward(AutogradContext ctx, params object[] vars)
        {
            using var scores = ((Tensor)vars[0]).contiguous();
            double scale = (double)vars[1];
            var probs = empty_like(scores);
            CausalSoftmaxKernel.Forward(TensorMemory.Address(scores), TensorMemory.Address(probs), KernelAdam.ElementOf(scores.dtype),
                scores.shape[0], (int)scores.shape[1], (float)scale, Threads);
            ctx.save_for_backward(new List<Tensor> { probs });
            ctx.save_data("scale", scale);
            return probs;
        }

        public override unsafe List<Tensor> backward(AutogradContext ctx, Tensor gradOutput)
        {
            var saved = ctx.get_saved_variables();
            var probs = saved[0];
            double scale = (double)ctx.get_data("scale");
            var gradScores = empty_like(probs);
            using (var g = gradOutput.contiguous())
                CausalSoftmaxKernel.Backward(TensorMemory.Address(probs), TensorMemory.Address(g), TensorMemory.Address(gradScores),
                    KernelAdam.ElementOf(probs.dtype), probs.shape[0], (int)probs.shape[1], (float)scale, Threads);
            BackwardHandles.Release([gradOutput, .. saved]);
            return BackwardHandles.Return(new List<Tensor> { gradScores, null! }); // none for the scale
        }
    }
}
