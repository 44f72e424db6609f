using PatrickStar.Models.Generation;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models.Gpt;

// Generation with a key/value cache: the same layers as GptModel.cs, continuing at the position the cache has reached.

public sealed partial class CausalSelfAttention
{
    internal Tensor Forward(Tensor x, LayerKv cache)
    {
        long b = x.shape[0], t = x.shape[1], h = x.shape[2];
        using var scope = NewDisposeScope();
        var parts = c_attn.call(x).split(h, dim: 2);
        Tensor Heads(Tensor z) => z.view(b, t, heads, h / heads).transpose(1, 2);
        var y = CausalAttention.Attend(Heads(parts[0]), Heads(parts[1]), Heads(parts[2]), cache, training ? attentionDropout : 0.0);
        y = y.transpose(1, 2).contiguous().view(b, t, h);
        return resid_dropout.call(c_proj.call(y)).MoveToOuterDisposeScope();
    }
}

public sealed partial class Block
{
    internal Tensor Forward(Tensor x, LayerKv cache)
    {
        using var scope = NewDisposeScope();
        var a = x + attn.Forward(ln_1.call(x), cache);
        return (a + mlp.call(ln_2.call(a))).MoveToOuterDisposeScope();
    }
}

public sealed partial class GptTransformer
{
    internal Tensor Forward(Tensor idx, KvCache cache)
    {
        cache.EnsureRoom(idx.shape[1]);
        using var scope = NewDisposeScope();
        var pos = arange(cache.Length, cache.Length + idx.shape[1], dtype: ScalarType.Int64, device: idx.device);
        var x = drop.call(wte.call(idx) + wpe.call(pos));
        int i = 0;
        foreach (var block in h) x = block.Forward(x, cache.Layer(i++));
        return ln_f.call(x).MoveToOuterDisposeScope();
    }
}

public sealed partial class GptModel : ICausalLm
{
    public int VocabSize => Config.VocabSize;
    public int ContextLength => Config.ContextLength;
    public Module<Tensor, Tensor> Network => this;
    public KvCache NewCache() => new(Config.Layers, Config.ContextLength);

    public Tensor Forward(Tensor idx, KvCache cache)
    {
        using var hidden = transformer.Forward(idx, cache);
        return lm_head.call(hidden);
    }
}
