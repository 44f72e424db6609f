using PatrickStar.Timing;
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
//
// Mixed storage (Precision.Bf16Fp32): a parameter may be stored in a narrower dtype than the activations.
// Each function then computes with an upcast copy of the parameter (a temporary of this call) and returns
// the parameter's gradient in the parameter's own dtype, so .grad accumulation and the chunk slots see
// the dtype they store; input gradients stay in the activation dtype.

/// <summary>Entry points used by the model's layers.</summary>
public static class ParameterOps
{
    /// <summary>y = bias + x·weight for x of shape [N, in] and weight [in, out] (HF's Conv1D).</summary>
    public static Tensor Addmm(Tensor x, Parameter weight, Parameter bias, string module)
    {
        using var timed = StepPhases.Begin(StepPhase.ForwardMatmul);
        return AddmmFunction.apply(x, weight, bias, module)[0];
    }

    /// <summary>y = x·weightᵀ for x [..., h] and weight [vocab, h] (the tied LM head).</summary>
    public static Tensor LinearNoBias(Tensor x, Parameter weight, string module) => Linear(x, weight, null, module);

    /// <summary>nn.Linear: y = x·weightᵀ + bias for x [..., in], weight [out, in] and bias [out] (null: no bias).</summary>
    public static Tensor Linear(Tensor x, Parameter weight, Parameter? bias, string module)
    {
        using var timed = StepPhases.Begin(StepPhase.ForwardMatmul);
        return LinearFunction.apply(x, weight, bias, module)[0];
    }

    /// <summary>Rows of <paramref name="weight"/> picked by integer <paramref name="indices"/>, in <paramref name="outputType"/>
    /// (null: the weight's dtype). The embedding is where activations are born, so it fixes their dtype for the model.</summary>
    public static Tensor Embedding(Tensor indices, Parameter weight, string module, ScalarType? outputType = null) =>
        EmbeddingFunction.apply(indices, weight, module, outputType ?? weight.dtype)[0];

    /// <summary>LayerNorm over the last dimension; <paramref name="bias"/> may be null (nn.LayerNorm with bias: false).</summary>
    public static Tensor LayerNorm(Tensor x, Parameter weight, Parameter? bias, double eps, string module) =>
        LayerNormFunction.apply(x, weight, bias, module, eps)[0];
}

/// <summary>A parameter kept in an autograd context without being saved as a tensor (no version check, no copy).</summary>
internal sealed record ParameterRef(Parameter Parameter);

/// <summary>Dtype bridging between stored parameters and the activations they meet (see the note at the top).</summary>
internal static class Mixed
{
    /// <summary>The parameter itself when its dtype is the activation's; otherwise an upcast copy owned by the current dispose scope.</summary>
    public static Tensor Compute(Tensor parameter, ScalarType activation) =>
        parameter.dtype == activation ? parameter : parameter.to(activation);

    /// <summary>A computed parameter gradient in the parameter's storage dtype (the gradient itself when they agree).</summary>
    public static Tensor Stored(Tensor gradient, Tensor parameter) =>
        gradient.dtype == parameter.dtype ? gradient : gradient.to(parameter.dtype);
}

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
        using var scope = NewDisposeScope(); // frees the upcast weight and bias, if any
        var y = addmm(Mixed.Compute(b, x.dtype), x, Mixed.Compute(w, x.dtype), beta: 1, alpha: 1);
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = ((ParameterRef)ctx.get_data("b")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w, b }, new[] { 1, 2 }, 4, [x, g, .. grads], () => new Tensor?[]
        {
            g.mm(Mixed.Compute(w, g.dtype).t()),         // dL/dx
            Mixed.Stored(x.t().mm(g), w),                // dL/dW  [in, out]
            Mixed.Stored(g.sum(dim: 0), b),              // dL/db
            null,
        });
    }
}

/// <summary>nn.Linear's math, y = x·weightᵀ (+ bias) for x [..., in], weight [out, in], bias [out] or null.</summary>
internal sealed class LinearFunction : MultiTensorFunction<LinearFunction>
{
    public override string Name => "PatrickStar.Linear";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Parameter)vars[1], (Parameter?)vars[2]);
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("b", new ParameterRef(b!));
        ctx.save_data("module", vars[3]);
        using var _ = no_grad();
        using var scope = NewDisposeScope(); // frees the upcast weight and bias, if any
        var y = nn.functional.linear(x, Mixed.Compute(w, x.dtype), b is null ? null : Mixed.Compute(b, x.dtype));
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = (Parameter?)((ParameterRef)ctx.get_data("b")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        var (parameters, slots) = b is null ? (new[] { w }, new[] { 1 }) : (new[] { w, b }, new[] { 1, 2 });
        return ParameterBackward.Run((string)ctx.get_data("module"), parameters, slots, 4, [x, g, .. grads], () =>
        {
            long h = x.shape[^1], v = w.shape[0];
            var g2 = g.reshape(-1, v);
            return new Tensor?[]
            {
                g.matmul(Mixed.Compute(w, g.dtype)),                   // dL/dx  [..., h]
                Mixed.Stored(g2.t().mm(x.reshape(-1, h)), w),          // dL/dW  [out, h]
                b is null ? null : Mixed.Stored(g2.sum(dim: 0), b),    // dL/db  [out]
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
        var outputType = (ScalarType)vars[3];
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        // Only the looked-up rows are converted (never the whole table).
        var rows = w.index_select(0, idx.reshape(-1));
        var shape = idx.shape.Append(w.shape[1]).ToArray();
        var y = rows.to(outputType).reshape(shape);
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var idx = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var g = ParameterBackward.OutputGradient(ctx, grads);
        return ParameterBackward.Run((string)ctx.get_data("module"), new[] { w }, new[] { 1 }, 4, [idx, g, .. grads], () =>
        {
            long h = w.shape[1];
            var flatIdx = idx.reshape(-1);
            var rows = g.reshape(-1, h);
            // A handler that takes rows adds them straight into the gradient it keeps: no dense [V, h] table per step.
            if (ParameterEvents.HandlerOf(w) is IRowGradientHandler byRows && byRows.AcceptRows(w, flatIdx, rows))
                return new Tensor?[] { null, null, null, null };
            // Rows never looked up get zero gradient; repeated indices add up (as embedding_backward does).
            // Summed in the activation dtype (fp32 under bf16 storage), stored in the weight's.
            var dw = zeros(w.shape, dtype: g.dtype, device: g.device);
            dw.index_add_(0, flatIdx, rows, 1);
            return new Tensor?[] { null, Mixed.Stored(dw, w), null, null };
        });
    }
}

internal sealed class LayerNormFunction : MultiTensorFunction<LayerNormFunction>
{
    public override string Name => "PatrickStar.LayerNorm";

    public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
    {
        var (x, w, b) = ((Tensor)vars[0], (Parameter)vars[1], (Parameter?)vars[2]);
        double eps = (double)vars[4];
        ctx.save_for_backward(new List<Tensor> { x });
        ctx.save_data("w", new ParameterRef(w));
        ctx.save_data("b", new ParameterRef(b!));
        ctx.save_data("module", vars[3]);
        ctx.save_data("eps", eps);
        using var _ = no_grad();
        using var scope = NewDisposeScope(); // frees the upcast weight and bias, if any
        var y = nn.functional.layer_norm(x, new[] { x.shape[^1] }, Mixed.Compute(w, x.dtype), b is null ? null : Mixed.Compute(b, x.dtype), eps);
        return ParameterBackward.Outputs(ctx, y.MoveToOuterDisposeScope());
    }

    public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
    {
        var x = ctx.get_saved_variables()[0];
        var w = ((ParameterRef)ctx.get_data("w")).Parameter;
        var b = (Parameter?)((ParameterRef)ctx.get_data("b")).Parameter;
        double eps = (double)ctx.get_data("eps");
        var g = ParameterBackward.OutputGradient(ctx, grads);
        var (parameters, slots) = b is null ? (new[] { w }, new[] { 1 }) : (new[] { w, b }, new[] { 1, 2 });
        return ParameterBackward.Run((string)ctx.get_data("module"), parameters, slots, 5, [x, g, .. grads], () =>
        {
            // libtorch's own fused LayerNorm backward, on a recomputed forward of detached copies (one pass each; 16-bit inputs
            // are summed in fp32 inside the kernel): where an analytic backward in tensor ops costs about fifteen passes over
            // the activation, and four casts between bf16 and fp32 under bf16 compute.
            long h = x.shape[^1];
            Tensor xd = x.detach().requires_grad_(), wd = Mixed.Compute(w, x.dtype).detach().requires_grad_();
            Tensor? bd = b is null ? null : Mixed.Compute(b, x.dtype).detach().requires_grad_();
            IList<Tensor> d;
            using (enable_grad())
            {
                var y = nn.functional.layer_norm(xd, new[] { h }, wd, bd, eps);
                d = grad(new[] { y }, bd is null ? new[] { xd, wd } : new[] { xd, wd, bd }, new[] { g });
            }
            return new Tensor?[] { d[0], Mixed.Stored(d[1], w), b is null ? null : Mixed.Stored(d[2], b), null, null };
        });
    }
}
