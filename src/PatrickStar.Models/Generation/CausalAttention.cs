using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Models.Generation;

/// <summary>Causal scaled-dot-product attention over heads, with grouped-query heads and an optional key/value cache.</summary>
public static class CausalAttention
{
    /// <summary>
    /// q [B, heads, T, d]; k, v [B, kv_heads, T, d] with heads a multiple of kv_heads (each key/value head serves
    /// heads / kv_heads query heads, in order). With a cache, k and v are appended to it and the queries (positions
    /// past .. past + T - 1) attend over every cached position up to their own. Returns [B, heads, T, d].
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, LayerKv? cache, double dropout)
    {
        using var scope = NewDisposeScope();
        long t = q.shape[2];
        long past = cache?.Length ?? 0;
        if (cache is not null) (k, v) = cache.Append(k, v);
        long groups = q.shape[1] / k.shape[1];
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, dim: 1);
            v = v.repeat_interleave(groups, dim: 1);
        }
        Tensor y;
        using (PatrickStar.Timing.StepPhases.Begin(PatrickStar.Timing.StepPhase.Attention))
        {
            if (past == 0) y = F.scaled_dot_product_attention(q, k, v, p: dropout, is_casual: true);
            else if (t == 1) y = F.scaled_dot_product_attention(q, k, v, p: dropout);
            else
            {
                // Query i sits at position past + i: it sees keys 0 .. past + i (is_causal would align the corner at key 0).
                var rows = arange(past, past + t, device: q.device).unsqueeze(1);
                var cols = arange(past + t, device: q.device).unsqueeze(0);
                y = F.scaled_dot_product_attention(q, k, v, attn_mask: cols.le(rows), p: dropout);
            }
        }
        return y.MoveToOuterDisposeScope();
    }
}
