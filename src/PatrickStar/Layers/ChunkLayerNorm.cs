using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Layers;

/// <summary>nn.LayerNorm over the last dimension, with a learned scale and (optionally) bias, for the chunk engine.</summary>
public sealed class ChunkLayerNorm : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly Parameter? bias;
    private readonly double eps;

    /// <summary>A new layer: scale ones, bias zeros (as nn.LayerNorm).</summary>
    public ChunkLayerNorm(long normalizedShape, double eps = 1e-5, bool bias = true)
        : this(new Parameter(ones(normalizedShape)), bias ? new Parameter(zeros(normalizedShape)) : null, eps) { }

    /// <summary>A layer over existing parameters (kept, not copied).</summary>
    public ChunkLayerNorm(Parameter weight, Parameter? bias, double eps) : base(nameof(ChunkLayerNorm))
    {
        this.weight = weight;
        this.bias = bias;
        this.eps = eps;
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(ChunkLayerNorm);

    public override Tensor forward(Tensor x)
    {
        ParameterEvents.EnsureReadyForForward(Path, weight);
        return ParameterOps.LayerNorm(x, weight, bias, eps, Path);
    }
}
