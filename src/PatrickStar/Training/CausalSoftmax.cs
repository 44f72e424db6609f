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

    private static ElementType TypeOf(Tensor t) => t.dtype switch
    {
        ScalarType.Float32 => ElementType.Float32,
        ScalarType.BFloat16 => ElementType.BFloat16,
        _ => ElementType.Float16,
    };

    private static int Threads => Math.Max(1, get_num_threads());

    private sealed class Function : SingleTensorFunction<Function>
    {
        public override string Name => "PatrickStar.CausalSoftmax";

        public override unsafe Tensor forward(AutogradContext ctx, params object[] vars)
        {
            using var scores = ((Tensor)vars[0]).contiguous();
            double scale = (double)vars[1];
            var probs = empty_like(scores);
            CausalSoftmaxKernel.Forward(TensorMemory.Address(scores), TensorMemory.Address(probs), TypeOf(scores),
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
                    TypeOf(probs), probs.shape[0], (int)probs.shape[1], (float)scale, Threads);
            BackwardHandles.Release([gradOutput, .. saved]);
            return BackwardHandles.Return(new List<Tensor> { gradScores, null! }); // none for the scale
        }
    }
}
