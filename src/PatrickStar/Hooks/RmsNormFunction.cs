using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Hooks;

/// <summary>Normalisation ops for model families beyond GPT-2, chunk-aware for the same reason as <see cref="ParameterOps"/>.</summary>
public static class NormOps
{
    /// <summary>
    /// RMSNorm over the last dimension (LLaMA): y = w · x / sqrt(mean(x²) + eps). As Hugging Face computes it, the
    /// normalisation runs in fp32 and its result is cast back to the activations' dtype before the weight multiplies it.
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Parameter weight, double eps, string module) =>
        RmsNormFunction.apply(x, weight, module, eps)[0];
}

internal sealed class RmsNormFunction : MultiTensorFunction<RmsNormFunction>
{
    public override string Name => "PatrickStar.RmsNorm";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w) = ((Tensor)vars[0], (Parameter)vars[1]);
        double eps = (double)vars[3];
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("module", vars[2]);
        ctx.save_data("eps", eps);
        using var _ = no_grad();
        using var scope = NewDisposeScope(); // frees the fp32 temporaries and the upcast weight, if any
        var xf = x.to(ScalarType.Float32);
        var normed = (xf * (xf.square().mean(new long[] { -1 }, keepdim: true) + eps).rsqrt()).to(x.dtype);
        var y = normed * Mixed.Compute(w, x.dtype);
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        double eps = (double)ctx.get_data("eps");
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w }, new[] { 1 }, 4, [x, g, .. grads], () =>
        {
            // In fp32: x̂ = x·r with r = (mean(x²) + eps)^-½; dx = r·(ĝ - x̂·mean(ĝ·x̂)) with ĝ = g·w; dw = Σ g·x̂.
            long h = x.shape[^1];
            var xf = x.to(ScalarType.Float32).reshape(-1, h);
            var gf = g.to(ScalarType.Float32).reshape(-1, h);
            var rstd = (xf.square().mean(new long[] { 1 }, keepdim: true) + eps).rsqrt();
            var xhat = xf * rstd;
            var gh = gf * w.to(ScalarType.Float32);
            var dx = rstd * (gh - xhat * (gh * xhat).mean(new long[] { 1 }, keepdim: true));
            var dw = (gf * xhat).sum(dim: 0);
            return new Tensor?[] { dx.to(x.dtype).reshape(x.shape), dw.to(w.dtype), null, null };
        });
    }
}
