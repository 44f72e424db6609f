using static TorchSharp.torch;

namespace PatrickStar.Chunks;

/// <summary>
/// Parameters that take no memory until the chunk engine gives them a slot: one element broadcast to the parameter's
/// shape (every stride 0), in the compute dtype. A model built inside <see cref="Scope"/> gets them from
/// <see cref="Empty"/>, <see cref="Zeros"/> and <see cref="Ones"/>, so that the whole fp32 model never exists before
/// its chunks: the engine initialises each parameter in its chunk slot instead (<see cref="IParameterInitializer"/>).
/// Outside a scope those methods are plain <c>empty</c>, <c>zeros</c> and <c>ones</c>.
/// </summary>
public static class ParameterPlaceholders
{
    [ThreadStatic] private static ScalarType? active;

    /// <summary>Models built on this thread until the scope is disposed get placeholder parameters of <paramref name="dtype"/>.</summary>
    public static IDisposable Scope(ScalarType dtype)
    {
        var previous = active;
        active = dtype;
        return new Restore(previous);
    }

    /// <summary>True inside a <see cref="Scope"/>: a model being built should skip its own initialisation.</summary>
    public static bool Active => active is not null;

    public static Tensor Empty(params long[] shape) => active is ScalarType t ? Placeholder(shape, t) : empty(shape);
    public static Tensor Zeros(params long[] shape) => active is ScalarType t ? Placeholder(shape, t) : zeros(shape);
    public static Tensor Ones(params long[] shape) => active is ScalarType t ? Placeholder(shape, t) : ones(shape);

    /// <summary>True for a tensor that is one element broadcast to a larger shape (what <see cref="Scope"/> builds).</summary>
    public static bool IsPlaceholder(Tensor t) => t.numel() > 1 && t.stride().All(s => s == 0);

    private static Tensor Placeholder(long[] shape, ScalarType dtype)
    {
        using var one = zeros(1, dtype: dtype);
        return one.expand(shape);
    }

    private sealed class Restore(ScalarType? previous) : IDisposable
    {
        public void Dispose() => active = previous;
    }
}
