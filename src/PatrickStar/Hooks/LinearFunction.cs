using PatrickStar.Timing;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Hooks;

public static partial class ParameterOps
{
    /// <summary>nn.Linear: y = x·weightᵀ + bias for x [..., in], weight [out, in] and bias [out] (null: no bias).</summary>
    public static Tensor Linear(Tensor x, Parameter weight, Parameter? bias, string module)
    {
        if (bias is null) return LinearNoBias(x, weight, module);
        using var timed = StepPhases.Begin(StepPhase.ForwardMatmul);
        return LinearFunction.apply(x, weight, bias, module)[0];
    }
}

/// <summary>nn.Linear with a bias, chunk-aware for the reasons given in ParameterOps.cs.</summary>
internal sealed class LinearFunction : MultiTensorFunction<LinearFunction>
{
    public override string Name => "PatrickStar.Linear";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Parameter)vars[1], (Parameter)vars[2]);
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("b", new ParameterRef(b));
        ctx.save_data("module", vars[3]);
        using var _ = no_grad();
        using var scope = NewDisposeScope(); // frees the upcast weight and bias, if any
        var y = nn.functional.linear(x, Mixed.Compute(w, x.dtype), Mixed.Compute(b, x.dtype));
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = ((ParameterRef)ctx.get_data("b")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w, b }, new[] { 1, 2 }, 4, [x, g, .. grads], () =>
        {
            var rows = g.reshape(-1, w.shape[0]);
            return new Tensor?[]
            {
                g.matmul(Mixed.Compute(w, g.dtype)),                         // dL/dx  [..., in]
                Mixed.Stored(rows.t().mm(x.reshape(-1, w.shape[1])), w),     // dL/dW  [out, in]
                Mixed.Stored(rows.sum(dim: 0), b),                           // dL/db  [out]
                null,
            };
        });
    }
}
