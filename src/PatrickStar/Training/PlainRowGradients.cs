using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>
/// The plain trainer's handler for the weights of embedding lookups (<see cref="IValueFreeBackward"/> layers): each
/// contribution goes straight into .grad, and the lookup's rows are added there in place. Left to autograd, the lookup's
/// gradient would be a dense table of the weight's size, built, summed with the tied head's gradient and dropped every step
/// (three passes over a [vocab × hidden] table). Same sums as autograd's accumulation; .grad holds the same values.
/// </summary>
internal sealed class PlainRowGradients : IParameterHandler, IRowGradientHandler, IDisposable
{
    private readonly List<Parameter> attached = new();

    public PlainRowGradients(Module<Tensor, Tensor> model)
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (_, module) in model.named_modules())
        {
            if (module is not IValueFreeBackward) continue;
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
        if (current is null) parameter.grad = gradient; // kept (the caller drops only its handle), as autograd keeps the first gradient
        else current.add_(gradient);
        return true;
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
        using var fresh = zeros_like(parameter);
        fresh.index_add_(0, indices, rows, 1);
        parameter.grad = fresh;
        return true;
    }

    public void Dispose()
    {
        foreach (var p in attached) ParameterEvents.Detach(p);
        attached.Clear();
    }
}
