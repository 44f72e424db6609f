using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>
/// The plain trainer's handler for the weights of embedding lookups (<see cref="IValueFreeBackward"/> layers) and of LM heads
/// (<see cref="IWholeWeightGradient"/>): each contribution goes straight into .grad, and the lookup's rows are added there in
/// place. Left to autograd, the lookup's gradient would be a dense table of the weight's size, built, summed with the tied
/// head's gradient and dropped every step (three passes over a [vocab × hidden] table). .grad is a tensor made once and kept
/// (the engine sets .grad to none after each step), so that no table of the weight's size is made afresh per step either;
/// an fp32 head's d/dW, computed ahead in the head's own kept tensor, becomes .grad itself (the two tensors alternate).
/// Same sums as autograd's accumulation; .grad holds the same values.
/// </summary>
internal sealed class PlainRowGradients : IParameterHandler, IRowGradientHandler, IDisposable
{
    private readonly List<Parameter> attached = new();
    private readonly Dictionary<Parameter, Tensor> kept = new(ReferenceEqualityComparer.Instance);
    private readonly List<HeadGradientBuffer> headBuffers = new();

    public PlainRowGradients(Module<Tensor, Tensor> model)
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (_, module) in model.named_modules())
        {
            if (module is IHeadGradientOwner head) headBuffers.Add(head.WeightGradient);
            if (module is not (IValueFreeBackward or IWholeWeightGradient)) continue;
            foreach (var p in module.parameters(recurse: false))
                if (seen.Add(p))
                {
                    ParameterEvents.Attach(p, this);
                    attached.Add(p);
                }
        }
    }

    public void BeforeBackward(string module, IReadOnlyList<Parameter> parameters) { }

    public void AfterBackward(string module, IReadOnlyList<Parameter> parameters) { }

    public bool AcceptGradient(Parameter parameter, Tensor gradient)
    {
        using var _ = no_grad();
        using var current = parameter.grad;
        if (current is not null) AddConverting(current, gradient);
        else parameter.grad = TakeHeads(parameter, gradient) ?? Kept(parameter).copy_(gradient); // converted where it is fp32
        return true;
    }

    /// <summary>
    /// The head's lent d/dW itself when it is in the parameter's dtype (fp32): it becomes .grad as it is, and the head takes
    /// the parameter's former gradient storage (free: .grad is none) to write the next one into. Two tensors alternate, and no
    /// pass of the weight's size copies one into the other. Null when <paramref name="gradient"/> is not a head's lent tensor.
    /// </summary>
    private Tensor? TakeHeads(Parameter parameter, Tensor gradient)
    {
        if (gradient.dtype != parameter.dtype) return null;
        kept.TryGetValue(parameter, out var spare);
        foreach (var buffer in headBuffers)
            if (buffer.HandOver(gradient, spare) is { } taken)
                return kept[parameter] = taken; // spare is the head's now
        return null;
    }

    /// <summary>into += gradient, a slice of rows at a time where the dtypes differ: torch would first convert whole operands
    /// (temporaries of the weight's size).</summary>
    private static void AddConverting(Tensor into, Tensor gradient)
    {
        if (gradient.dtype == into.dtype || into.dim() == 0)
        {
            into.add_(gradient);
            return;
        }
        long rows = into.shape[0], slice = Math.Max(1, BlockedHeadLoss.SliceElements / Math.Max(1, into.numel() / rows));
        for (long start = 0; start < rows; start += slice)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(slice, rows - start);
            into.narrow(0, start, n).add_(gradient.narrow(0, start, n));
        }
    }

    /// <summary>The parameter's gradient storage, made on first use and kept across steps; its values are stale.</summary>
    private Tensor Kept(Parameter parameter)
    {
        if (kept.TryGetValue(parameter, out var t)) return t;
        return kept[parameter] = empty_like(parameter).DetachFromDisposeScope();
    }

    public bool AcceptRows(Parameter parameter, Tensor indices, Tensor rows)
    {
        if (rows.dtype != parameter.dtype) return false; // bf16 storage with fp32 compute: the dense path sums in fp32
        using var _ = no_grad();
        using var current = parameter.grad;
        if (current is not null)
        {
            current.index_add_(0, indices, rows, 1);
            return true;
        }
        parameter.grad = Kept(parameter).zero_().index_add_(0, indices, rows, 1);
        return true;
    }

    public void Dispose()
    {
        foreach (var p in attached) ParameterEvents.Detach(p);
        attached.Clear();
        foreach (var t in kept.Values) t.Dispose(); // .grad, where it still is one, holds its own reference
        kept.Clear();
    }
}
