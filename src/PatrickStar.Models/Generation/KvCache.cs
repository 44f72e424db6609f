using static TorchSharp.torch;

namespace PatrickStar.Models.Generation;

/// <summary>
/// A language model that can continue a sequence from a key/value cache: generation then runs each new token
/// through the model once instead of re-running the whole window.
/// </summary>
public interface ICausalLm : IDisposable
{
    int VocabSize { get; }

    /// <summary>The most positions the model can attend over (n_positions / max_position_embeddings).</summary>
    int ContextLength { get; }

    /// <summary>The module itself: called on token ids [B, T] it gives logits [B, T, vocab].</summary>
    nn.Module<Tensor, Tensor> Network { get; }

    /// <summary>An empty cache for this model (its layers, context length as capacity).</summary>
    KvCache NewCache();

    /// <summary>
    /// Logits [B, T, vocab] of <paramref name="ids"/> [B, T] placed at positions cache.Length .. cache.Length + T - 1,
    /// attending over the cached keys and values; their own keys and values are appended to the cache.
    /// </summary>
    Tensor Forward(Tensor ids, KvCache cache);
}

/// <summary>Keys and values of the tokens seen so far, per layer, in buffers sized to the context length.</summary>
public sealed class KvCache : IDisposable
{
    private readonly LayerKv[] layers;

    public KvCache(int layers, long capacity)
    {
        Capacity = capacity;
        this.layers = Enumerable.Range(0, layers).Select(_ => new LayerKv(capacity)).ToArray();
    }

    public long Capacity { get; }

    /// <summary>Tokens cached so far: the position the next token takes.</summary>
    public long Length => layers.Length == 0 ? 0 : layers[0].Length;

    public LayerKv Layer(int index) => layers[index];

    /// <summary>Refuses, before any layer runs, input that would not fit in the cache.</summary>
    public void EnsureRoom(long tokens)
    {
        if (Length + tokens > Capacity)
            throw new ArgumentException($"{Length} cached + {tokens} new tokens exceed the model's context length {Capacity}.");
    }

    public void Dispose()
    {
        foreach (var l in layers) l.Dispose();
    }
}

/// <summary>One attention layer's cached keys and values, [B, kv_heads, capacity, head_size] each, allocated on first use.</summary>
public sealed class LayerKv : IDisposable
{
    private readonly long capacity;
    private Tensor? keys, values;

    internal LayerKv(long capacity) => this.capacity = capacity;

    public long Length { get; private set; }

    /// <summary>Appends new keys and values [B, kv_heads, T, head_size]; returns views of everything cached, new ones included.</summary>
    public (Tensor Keys, Tensor Values) Append(Tensor k, Tensor v)
    {
        long t = k.shape[2];
        if (keys is null)
        {
            keys = zeros(new[] { k.shape[0], k.shape[1], capacity, k.shape[3] }, dtype: k.dtype, device: k.device).DetachFromDisposeScope();
            values = zeros(new[] { v.shape[0], v.shape[1], capacity, v.shape[3] }, dtype: v.dtype, device: v.device).DetachFromDisposeScope();
        }
        using (var ks = keys.narrow(2, Length, t)) ks.copy_(k);
        using (var vs = values!.narrow(2, Length, t)) vs.copy_(v);
        Length += t;
        return (keys.narrow(2, 0, Length), values.narrow(2, 0, Length));
    }

    public void Dispose()
    {
        keys?.Dispose();
        values?.Dispose();
    }
}
