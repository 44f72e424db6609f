using PatrickStar.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Layers;

/// <summary>
/// nn.Linear for the chunk engine: the same parameters (weight [out, in], optional bias [out]), names, initialisation
/// and math, computed through <see cref="ParameterOps.Linear"/> so that the engine can move the parameters between tiers.
/// </summary>
public sealed class ChunkLinear : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly Parameter? bias;

    /// <summary>A new layer, initialised as nn.Linear is (Kaiming-uniform weight, uniform bias in ±1/√in).</summary>
    public ChunkLinear(long inputSize, long outputSize, bool hasBias = true)
        : this(new Parameter(empty(outputSize, inputSize)), hasBias ? new Parameter(empty(outputSize)) : null)
    {
        using var _ = no_grad();
        nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
        if (bias is not null) nn.init.uniform_(bias, -1 / Math.Sqrt(inputSize), 1 / Math.Sqrt(inputSize));
    }

    /// <summary>A layer over existing parameters (kept, not copied).</summary>
    public ChunkLinear(Parameter weight, Parameter? bias) : base(nameof(ChunkLinear))
    {
        this.weight = weight;
        this.bias = bias;
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(ChunkLinear);

    public override Tensor forward(Tensor x)
    {
        ParameterEvents.EnsureReadyForForward(Path, weight);
        return ParameterOps.Linear(x, weight, bias, Path);
    }
}
