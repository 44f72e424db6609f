using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Layers;

/// <summary>nn.Embedding (weight [count, dim]) for the chunk engine, with nn.Embedding's padding_idx: that row gets no gradient.</summary>
public sealed class ChunkEmbedding : Module<Tensor, Tensor>, INamedLayer, IValueFreeBackward
{
    private readonly Parameter weight;
    private readonly long? paddingIndex;

    /// <summary>A new table drawn from N(0, 1), its padding row zero (as nn.Embedding).</summary>
    public ChunkEmbedding(long count, long dim, long? paddingIndex = null) : this(new Parameter(empty(count, dim)), paddingIndex)
    {
        using var _ = no_grad();
        nn.init.normal_(weight);
        if (paddingIndex is not long row) return;
        using var padding = weight[row];
        padding.zero_();
    }

    /// <summary>A layer over an existing table (kept, not copied).</summary>
    public ChunkEmbedding(Parameter weight, long? paddingIndex) : base(nameof(ChunkEmbedding))
    {
        this.weight = weight;
        this.paddingIndex = paddingIndex;
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(ChunkEmbedding);

    public override Tensor forward(Tensor ids)
    {
        ParameterEvents.EnsureReadyForForward(Path, weight);
        var rows = ParameterOps.Embedding(ids, weight, Path);
        if (paddingIndex is not long padding) return rows;
        // Same values; the gradient of the positions that hold the padding id is cut, so its row receives none.
        using (rows)
        using (var keep = ids.ne(padding).unsqueeze(-1))
        using (var frozen = rows.detach())
            return where(keep, rows, frozen);
    }
}
