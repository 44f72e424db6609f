using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Chunks;

/// <summary>
/// A model that initialises one parameter at a time into any tensor of its shape, drawing from torch's global generator
/// exactly as its own construction does when it visits its parameters in <c>named_parameters()</c> order. The chunk
/// engine uses it to fill chunk slots directly from a model built with <see cref="ParameterPlaceholders"/>: the same
/// seed gives bit-identical parameters, without the whole fp32 model in memory at once.
/// </summary>
public interface IParameterInitializer
{
    /// <summary>Fills <paramref name="target"/> (contiguous, the parameter's shape, fp32) with <paramref name="parameter"/>'s initial values.</summary>
    void InitializeParameter(string name, Parameter parameter, Tensor target);

    /// <summary>
    /// Called instead of <see cref="InitializeParameter"/> for a parameter another rank keeps. By default its values are
    /// drawn into a scratch tensor and dropped, so that every later parameter gets the values a whole build gives it.
    /// </summary>
    void SkipParameter(string name, Parameter parameter)
    {
        using var scratch = empty(parameter.shape, dtype: ScalarType.Float32);
        InitializeParameter(name, parameter, scratch);
    }
}
