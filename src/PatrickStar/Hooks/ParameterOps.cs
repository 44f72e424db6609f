using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace PatrickStar.Hooks;

// Why parameterised operations are custom autograd functions here:
// the chunk engine moves a parameter between memory tiers with Tensor.set_, and set_ bumps the
// tensor's version counter. libtorch's own operators save their weight for backward and refuse to
// run backward when its version has changed ("modified by an inplace operation"). These functions
// save only the activations; in backward they read the parameter as it is *then* (after the engine
// has brought it back to the compute device), and hand each gradient to the parameter's handler.
// With no handler attached (the plain engine) gradients flow to .grad as usual, with the same math.

/// <summary>Entry points used by the model's layers.</summary>
public static class ParameterOps
{
    /// <summary>y = bias + x·weight for x of shape [N, in] and weight [in, out] (HF's Conv1D).</summary>
    public static Tensor Addmm(Tensor x, Parameter weight, Parameter bias, string module) =>
        AddmmFunction.apply(x, weight, bias, module)[0];

    /// <summary>y = x·weightᵀ for x [..., h] and weight [vocab, h] (the tied LM head).</summary>
    public static Tensor LinearNoBias(Tensor x, Parameter weight, string module) =>
        LinearNoBiasFunction.apply(x, weight, module)[0];

    /// <summary>Rows of <paramref name="weight"/> picked by integer <paramref name="indices"/>.</summary>
    public static Tensor Embedding(Tensor indices, Parameter weight, string module) =>
        EmbeddingFunction.apply(indices, weight, module)[0];

    /// <summary>LayerNorm over the last dimension.</summary>
    public static Tensor LayerNorm(Tensor x, Parameter weight, Parameter bias, double eps, string module) =>
        LayerNormFunction.apply(x, weight, bias, module, eps)[0];
}

/// <summary>A parameter kept in an autograd context without being saved as a tensor (no version check, no copy).</summary>
internal sealed record ParameterRef(Parameter Parameter);

/// <summary>The backward protocol shared by the parameterised functions.</summary>
internal static class ParameterBackward
{
    /// <summary>
    /// Wraps a function's single output. Gradient materialisation is turned off: TorchSharp would otherwise keep
    /// an empty_like copy of every output for the node's lifetime (an activation's worth of memory), owned by
    /// whatever dispose scope the forward ran in. The output's shape and dtype are kept to build a zero
    /// gradient in the rare case that none arrives.
    /// </summary>
    public static List<Tensor> Outputs(AutogradContext ctx, Tensor output)
    {
        ctx.set_materialize_grads(false);
        ctx.save_data("out_shape", output.shape);
        ctx.save_data("out_dtype", output.dtype);
        ctx.save_data("out_device", output.device);
        return new List<Tensor> { output };
    }

    /// <summary>The gradient of the single output, or zeros when autograd passes none.</summary>
    public static Tensor OutputGradient(AutogradContext ctx, List<Tensor> grads)
    {
        var g = grads.Count > 0 ? grads[0] : null;
        if (g is not null && !g.IsInvalid) return g;
        return zeros((long[])ctx.get_data("out_shape"), dtype: (ScalarType)ctx.get_data("out_dtype"), device: (Device)ctx.get_data("out_device"));
    }

    /// <summary>
    /// Brings the parameters back (handler), computes every input's gradient, gives each parameter's
    /// gradient to its handler, and never lets an exception escape into libtorch (it would abort the
    /// process): errors are captured and rethrown by the engine after backward returns.
    /// </summary>
    /// <param name="received">The handles this backward was given or unpacked (incoming gradients, saved tensors):
    /// released as soon as the results are computed (see <see cref="BackwardHandles"/>).</param>
    public static List<Tensor> Run(string module, Parameter[] parameters, int[] parameterSlots, int inputCount,
        IEnumerable<Tensor?> received, Func<Tensor?[]> compute)
    {
        var none = new List<Tensor>(new Tensor[inputCount]);
        try
        {
            var handler = parameters.Length > 0 ? ParameterEvents.HandlerOf(parameters[0]) : null;
            handler?.BeforeBackward(module, parameters);
            Tensor?[] grads;
            using (var scope = NewDisposeScope())
            {
                grads = compute();
                foreach (var g in grads) g?.MoveToOuterDisposeScope();
            }
            BackwardHandles.Release(received);
            if (handler is not null)
            {
                for (int i = 0; i < parameters.Length; i++)
                {
                    var g = grads[parameterSlots[i]];
                    if (g is not null && handler.AcceptGradient(parameters[i], g))
                    {
                        g.Dispose();
                        grads[parameterSlots[i]] = null;
                    }
                }
                handler.AfterBackward(module, parameters);
            }
            return BackwardHandles.Return(grads.ToList()!);
        }
        catch (Exception e)
        {
            ParameterEvents.Capture(e);
            return none;
        }
    }
}

internal sealed class AddmmFunction : MultiTensorFunction<AddmmFunction>
{
    public override string Name => "PatrickStar.Addmm";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Parameter)vars[1], (Parameter)vars[2]);
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("b", new ParameterRef(b));
        ctx.save_data("module", vars[3]);
        using var _ = no_grad();
        return ParameterBackward.Outputs(ctx, addmm(b, x, w, beta: 1, alpha: 1));
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = ((ParameterRef)ctx.get_data("b")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w, b }, new[] { 1, 2 }, 4, [x, g, .. grads], () => new Tensor?[]
        {
            g.mm(w.t()),          // dL/dx
            x.t().mm(g),          // dL/dW  [in, out]
            g.sum(dim: 0),             // dL/db
            null,
        });
    }
}

internal sealed class LinearNoBiasFunction : MultiTensorFunction<LinearNoBiasFunction>
{
    public override string Name => "PatrickStar.LinearNoBias";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w) = ((Tensor)vars[0], (Parameter)vars[1]);
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("module", vars[2]);
        using var _ = no_grad();
        return ParameterBackward.Outputs(ctx, nn.functional.linear(x, w));
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w }, new[] { 1 }, 3, [x, g, .. grads], () =>
        {
            long h = x.shape[^1], v = w.shape[0];
            var g2 = g.reshape(-1, v);
            return new Tensor?[]
            {
                g.matmul(w),                       // dL/dx  [..., h]
                g2.t().mm(x.reshape(-1, h)),       // dL/dW  [vocab, h]
                null,
            };
        });
    }
}

internal sealed class EmbeddingFunction : MultiTensorFunction<EmbeddingFunction>
{
    public override string Name => "PatrickStar.Embedding";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (idx, w) = ((Tensor)vars[0], (Parameter)vars[1]);
        ctx.save_for_backward(new List<Tensor> { idx });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("module", vars[2]);
        using var _ = no_grad();
        using var rows = w.index_select(0, idx.reshape(-1));
        var shape = idx.shape.Append(w.shape[1]).ToArray();
        return ParameterBackward.Outputs(ctx, rows.reshape(shape));
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var idx = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w }, new[] { 1 }, 3, [idx, g, .. grads], () =>
        {
            long h = w.shape[1];
            // Rows never looked up get zero gradient; repeated indices add up (as embedding_backward does).
            var dw = zeros(w.shape, dtype: g.dtype, device: g.device);
            dw.index_add_(0, idx.reshape(-1), g.reshape(-1, h), 1);
            return new Tensor?[] { null, dw, null };
        });
    }
}

internal sealed class LayerNormFunction : MultiTensorFunction<LayerNormFunction>
{
    public override string Name => "PatrickStar.LayerNorm";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Parameter)vars[1], (Parameter)vars[2]);
        double eps = (double)vars[4];
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("b", new ParameterRef(b));
        ctx.save_data("module", vars[3]);
        ctx.save_data("eps", eps);
        using var _ = no_grad();
        return ParameterBackward.Outputs(ctx, nn.functional.layer_norm(x, new[] { x.shape[^1] }, w, b, eps));
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = ((ParameterRef)ctx.get_data("b")).Parameter;
        double eps = (double)ctx.get_data("eps");
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w, b }, new[] { 1, 2 }, 5, [x, g, .. grads], () =>
        {
            // Analytic LayerNorm backward, in fp32 whatever the compute precision:
            // x̂ = (x - μ)·r, dx = r·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)) with ĝ = g·w.
            var dtype = x.dtype;
            long h = x.shape[^1];
            var xf = x.to(ScalarType.Float32).reshape(-1, h);
            var gf = g.to(ScalarType.Float32).reshape(-1, h);
            var mean = xf.mean(new long[] { 1 }, keepdim: true);
            var centered = xf - mean;
            var rstd = (centered.square().mean(new long[] { 1 }, keepdim: true) + eps).rsqrt();
            var xhat = centered * rstd;
            var gh = gf * w.to(ScalarType.Float32);
            var dx = rstd * (gh - gh.mean(new long[] { 1 }, keepdim: true) - xhat * (gh * xhat).mean(new long[] { 1 }, keepdim: true));
            var dw = (gf * xhat).sum(dim: 0);
            var db = gf.sum(dim: 0);
            return new Tensor?[] { dx.to(dtype).reshape(x.shape), dw.to(w.dtype), db.to(b.dtype), null, null };
        });
    }
}
