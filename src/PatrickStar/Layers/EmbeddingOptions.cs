using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Layers;

/// <summary>
/// The options of a TorchSharp nn.Embedding, found by probing: the module is native and exposes none of them. Its
/// table is swapped for a [count, 1] probe for one forward and backward (every row once, the first and last row
/// twice), then the original table goes back. padding_idx shows as a row without gradient, scale_grad_by_freq as a
/// repeated row whose gradient is not its count, max_norm as rows the forward rescaled, sparse as a sparse gradient.
/// </summary>
internal sealed record EmbeddingOptions(long? PaddingIndex, bool MaxNorm, bool ScaleGradByFrequency, bool Sparse)
{
    private const float Large = 1e18f; // above any max_norm a model would set; its square still fits in fp32

    public static EmbeddingOptions Probe(Embedding embedding, Parameter table)
    {
        long count = table.shape[0];
        var probe = new Parameter(full(count, 1, Large, dtype: ScalarType.Float32, device: table.device));
        try
        {
            embedding.weight = probe;
            using var scope = NewDisposeScope();
            using var grad = enable_grad();
            var ids = cat(new[] { arange(count, device: table.device), tensor(new[] { 0L, count - 1 }, device: table.device) });
            embedding.forward(ids).sum().backward();
            var g = probe.grad!;
            bool sparse = g.is_sparse;
            var received = (sparse ? g.to_dense() : g).reshape(-1);
            var uses = bincount(ids, minlength: count).to(ScalarType.Float32);
            var without = received.eq(0).nonzero().reshape(-1);
            long? padding = without.numel() > 0 ? without[0].item<long>() : null;
            bool scaled = (received.ne(0) & received.ne(uses)).any().item<bool>();
            bool renormed = probe.detach().ne(Large).any().item<bool>();
            return new EmbeddingOptions(padding, renormed, scaled, sparse);
        }
        finally
        {
            embedding.weight = table; // the module registers the original Parameter object again
            probe.Dispose();
        }
    }
}
