namespace PatrickStar.Models.Gpt;

/// <summary>
/// One matrix product of a training step, in the layout the model runs it: C[batch, m, n] = op(A)·op(B) with op(A) [m, k]
/// and op(B) [k, n]; <see cref="TransposeA"/> / <see cref="TransposeB"/>: the operand is stored the other way round and
/// read through a transposed view (as dW = xᵀ·g reads x). <see cref="Count"/>: how many times a step runs it.
/// </summary>
public sealed record Gemm(string Name, string Pass, long Batch, long M, long K, long N, bool TransposeA, bool TransposeB, int Count)
{
    /// <summary>FLOPs of one run (a multiply and an add per term).</summary>
    public double Flops => 2.0 * Batch * M * K * N;

    /// <summary>FLOPs of every run in a step.</summary>
    public double StepFlops => Flops * Count;

    public string Shape => (Batch > 1 ? $"{Batch}×" : "") + $"[{M}×{K}]{(TransposeA ? "ᵀ" : "")}·[{K}×{N}]{(TransposeB ? "ᵀ" : "")}";
}

/// <summary>
/// Every matrix product of one forward + backward step of <see cref="GptModel"/> (no recompute), with the shapes and layouts
/// its operations use (ParameterOps' Addmm and LinearNoBias, attention as batched products per head). Their FLOPs add up
/// to <see cref="GptConfig.TrainingFlops"/> exactly: the model FLOPs that MFU is computed from. The causal mask is not
/// discounted (as in the formula): attention's products are counted over the full s×s.
/// </summary>
public static class GptGemms
{
    public static IReadOnlyList<Gemm> OfStep(GptConfig config, long batch, long seq)
    {
        long n = batch * seq, h = config.Hidden, v = config.VocabSize, heads = config.Heads, d = h / heads, bh = batch * heads;
        int l = config.Layers;
        var list = new List<Gemm>();
        // HF's Conv1D (weight [in, out]): y = x·W; dx = g·Wᵀ; dW = xᵀ·g.
        void Linear(string name, long inFeatures, long outFeatures)
        {
            list.Add(new Gemm(name, "forward", 1, n, inFeatures, outFeatures, false, false, l));
            list.Add(new Gemm(name + " dx", "backward", 1, n, outFeatures, inFeatures, false, true, l));
            list.Add(new Gemm(name + " dW", "backward", 1, inFeatures, n, outFeatures, true, false, l));
        }
        Linear("attn.c_attn (QKV)", h, 3 * h);
        // Attention per head: S = Q·Kᵀ, O = P·V; backward dP = dO·Vᵀ, dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q.
        list.Add(new Gemm("attention Q·Kᵀ", "forward", bh, seq, d, seq, false, true, l));
        list.Add(new Gemm("attention P·V", "forward", bh, seq, seq, d, false, false, l));
        list.Add(new Gemm("attention dP = dO·Vᵀ", "backward", bh, seq, d, seq, false, true, l));
        list.Add(new Gemm("attention dV = Pᵀ·dO", "backward", bh, seq, seq, d, true, false, l));
        list.Add(new Gemm("attention dQ = dS·K", "backward", bh, seq, seq, d, false, false, l));
        list.Add(new Gemm("attention dK = dSᵀ·Q", "backward", bh, seq, seq, d, true, false, l));
        Linear("attn.c_proj", h, h);
        Linear("mlp.c_fc", h, 4 * h);
        Linear("mlp.c_proj", 4 * h, h);
        // The tied head (weight [V, h]): logits = x·Wᵀ; dx = g·W; dW = gᵀ·x.
        list.Add(new Gemm("lm_head", "forward", 1, n, h, v, false, true, 1));
        list.Add(new Gemm("lm_head dx", "backward", 1, n, v, h, false, false, 1));
        list.Add(new Gemm("lm_head dW", "backward", 1, v, n, h, true, false, 1));
        return list;
    }
}
