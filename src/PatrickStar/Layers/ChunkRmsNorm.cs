using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Layers;

/// <summary>
/// RMSNorm over the last dimension with a learned scale: y = w · x / sqrt(mean(x²) + eps). TorchSharp 0.107 has no
/// nn.RMSNorm, so models use this one (it behaves as PyTorch's; the normalisation runs in fp32, see <see cref="NormOps.RmsNorm"/>).
/// </summary>
public sealed class ChunkRmsNorm : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly double? eps;

    /// <param name="eps">Null: the machine epsilon of the input's dtype, as PyTorch's RMSNorm.</param>
    public ChunkRmsNorm(long normalizedShape, double? eps = null) : this(new Parameter(ones(normalizedShape)), eps) { }

    /// <summary>A layer over an existing scale (kept, not copied).</summary>
    public ChunkRmsNorm(Parameter weight, double? eps) : base(nameof(ChunkRmsNorm))
    {
        this.weight = weight;
        this.eps = eps;
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(ChunkRmsNorm);

    public override Tensor forward(Tensor x)
    {
        ParameterEvents.EnsureReadyForForward(Path, weight);
        return NormOps.RmsNorm(x, weight, eps ?? finfo(x.dtype).eps, Path);
    }
}
