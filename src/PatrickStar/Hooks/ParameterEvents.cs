using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Hooks;

/// <summary>
/// Receives the backward events of parameterised operations. An engine that manages parameters (the
/// chunk engine) attaches a handler to each of them; unmanaged parameters take autograd's usual path.
/// </summary>
public interface IParameterHandler
{
    /// <summary>The operation of <paramref name="module"/> is about to compute gradients: its parameters must be readable now.</summary>
    void BeforeBackward(string module, IReadOnlyList<Parameter> parameters);

    /// <summary>
    /// One gradient contribution for <paramref name="parameter"/>. Returns true when the handler took it
    /// (then autograd is given no gradient for it), false to let autograd accumulate it into .grad.
    /// The tensor is only valid during the call.
    /// </summary>
    bool AcceptGradient(Parameter parameter, Tensor gradient);

    /// <summary>The operation of <paramref name="module"/> has produced all its gradients.</summary>
    void AfterBackward(string module, IReadOnlyList<Parameter> parameters);

    /// <summary>Whether <paramref name="parameter"/> has been brought in for a forward now (its module's pre-forward event fired).</summary>
    bool ReadyForForward(Parameter parameter) => true;
}

/// <summary>
/// A handler that can take a gradient given as rows (an embedding lookup's: gradient[indices[i]] += rows[i]) without the
/// dense [rows × width] table that would otherwise be built, added and dropped every step.
/// </summary>
public interface IRowGradientHandler
{
    /// <summary>True when the handler added the rows into the parameter's gradient; false: the caller builds the dense gradient
    /// and gives it to <see cref="IParameterHandler.AcceptGradient"/> instead. The tensors are only valid during the call.</summary>
    bool AcceptRows(Parameter parameter, Tensor indices, Tensor rows);
}

/// <summary>
/// Where parameterised operations find their parameters' handler. Keyed by the Parameter object so that
/// several engines (or ranks as threads) can live in one process.
/// </summary>
public static class ParameterEvents
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Parameter, IParameterHandler> Handlers = new();

    public static void Attach(Parameter p, IParameterHandler handler) => Handlers.AddOrUpdate(p, handler);

    public static void Detach(Parameter p) => Handlers.Remove(p);

    public static IParameterHandler? HandlerOf(Parameter p) => Handlers.TryGetValue(p, out var h) ? h : null;

    /// <summary>
    /// Called by a chunk-aware layer's forward: the engine's pre-forward event fires only when a module is invoked with
    /// .call(x), so a parent that calls .forward(x) would hand the operator a parameter the engine has not fetched.
    /// </summary>
    public static void EnsureReadyForForward(string module, Parameter p)
    {
        if (HandlerOf(p) is { } handler && !handler.ReadyForForward(p))
            throw new InvalidOperationException($"layer '{module}' ran without the chunk engine's pre-forward event: its parent called .forward(x); " +
                                                "call submodules with .call(x) so that the engine can fetch their parameters.");
    }

    /// <summary>Errors raised inside backward callbacks; they cannot propagate there (the process would abort).</summary>
    private static readonly object ErrorGate = new();
    private static Exception? _pendingError;

    internal static void Capture(Exception e)
    {
        lock (ErrorGate) _pendingError ??= e;
    }

    /// <summary>Rethrows, once, the first error captured inside a backward callback since the last call.</summary>
    public static void RethrowCaptured()
    {
        Exception? e;
        lock (ErrorGate)
        {
            e = _pendingError;
            _pendingError = null;
        }
        if (e is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
    }
}

/// <summary>A layer that knows its dotted path in the model ("transformer.h.0.attn.c_attn"), for moments and errors.</summary>
public interface INamedLayer
{
    string Path { get; set; }
}

/// <summary>
/// A layer whose backward needs its parameters' shapes but not their values (an embedding lookup: the weight's
/// gradient is a scatter of the output gradient). The chunk engine can then take a shared weight's earlier
/// gradient contributions straight into the weight's slot instead of holding them apart until this one arrives.
/// </summary>
public interface IValueFreeBackward;

/// <summary>
/// A layer whose backward hands over its weight's whole gradient, computed ahead in storage the layer keeps (the blocked LM
/// head): a handler must add it into the parameter's gradient, never keep the tensor itself (unless the head hands it
/// over: HeadGradientBuffer.HandOver in Training).
/// </summary>
public interface IWholeWeightGradient;

/// <summary>A layer that uses parameters registered elsewhere (a tied LM head uses the token embedding's weight).</summary>
public interface ISharedParameterUser
{
    IEnumerable<Parameter> SharedParameters { get; }
}
