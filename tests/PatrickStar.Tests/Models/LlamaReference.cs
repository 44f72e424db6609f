using PatrickStar.Models.Llama;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Models;

/// <summary>
/// An independent LLaMA written with plain tensor ops over a name → tensor map (HF's parameter names), sharing no
/// code with the model classes: rotary embedding on (first half, second half) pairs, key/value heads picked per
/// query head by index, an explicit causal mask, SwiGLU, softmax cross-entropy and AdamW by hand.
/// </summary>
internal static class LlamaReference
{
    public static Dictionary<string, Tensor> Weights(LlamaForCausalLM model, bool requiresGrad = false) =>
        model.named_parameters().ToDictionary(n => n.name, n => n.parameter.detach().clone().requires_grad_(requiresGrad));

    private static Tensor RmsNorm(Tensor x, Tensor w, double eps) => x / (x.pow(2).mean(new long[] { -1 }, keepdim: true) + eps).sqrt() * w;

    /// <summary>Rotates each (x[i], x[i + d/2]) pair by angle position · θ^(-2i/d) (or the given frequencies).</summary>
    private static Tensor Rotate(Tensor x, long start, double[] frequencies)
    {
        long t = x.shape[2], half = x.shape[3] / 2;
        var angle = new float[t * half];
        for (long p = 0; p < t; p++)
            for (long i = 0; i < half; i++) angle[p * half + i] = (float)((start + p) * frequencies[i]);
        var a = tensor(angle, new[] { t, half });
        var (x1, x2) = (x.narrow(3, 0, half), x.narrow(3, half, half));
        return cat(new[] { x1 * a.cos() - x2 * a.sin(), x2 * a.cos() + x1 * a.sin() }, dim: 3);
    }

    public static double[] PlainFrequencies(LlamaConfig c) =>
        Enumerable.Range(0, c.HeadSize / 2).Select(i => Math.Pow(c.RopeTheta, -2.0 * i / c.HeadSize)).ToArray();

    /// <summary>Logits [B, T, V] for ids [B, T] at positions 0 .. T - 1.</summary>
    public static Tensor Logits(Dictionary<string, Tensor> w, LlamaConfig c, Tensor ids, double[]? frequencies = null)
    {
        frequencies ??= PlainFrequencies(c);
        long b = ids.shape[0], t = ids.shape[1], d = c.HeadSize;
        var x = w["model.embed_tokens.weight"].index_select(0, ids.reshape(-1)).reshape(b, t, c.Hidden);
        var allowed = ones(t, t).tril().to(ScalarType.Bool);
        var kvOfHead = tensor(Enumerable.Range(0, c.Heads).Select(h => (long)(h / (c.Heads / c.KvHeads))).ToArray());
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var n = RmsNorm(x, w[p + "input_layernorm.weight"], c.RmsEps);
            Tensor Heads(string proj, int heads) => n.matmul(w[p + $"self_attn.{proj}.weight"].t()).reshape(b, t, heads, d).permute(0, 2, 1, 3);
            var q = Rotate(Heads("q_proj", c.Heads), 0, frequencies);
            var k = Rotate(Heads("k_proj", c.KvHeads), 0, frequencies).index_select(1, kvOfHead);
            var v = Heads("v_proj", c.KvHeads).index_select(1, kvOfHead);
            var scores = q.matmul(k.transpose(2, 3)) / Math.Sqrt(d);
            var att = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity).softmax(-1).matmul(v);
            x = x + att.permute(0, 2, 1, 3).reshape(b, t, c.Heads * d).matmul(w[p + "self_attn.o_proj.weight"].t());
            var m = RmsNorm(x, w[p + "post_attention_layernorm.weight"], c.RmsEps);
            var gate = m.matmul(w[p + "mlp.gate_proj.weight"].t());
            var up = m.matmul(w[p + "mlp.up_proj.weight"].t());
            x = x + (gate * gate.sigmoid() * up).matmul(w[p + "mlp.down_proj.weight"].t());
        }
        x = RmsNorm(x, w["model.norm.weight"], c.RmsEps);
        var head = w.TryGetValue("lm_head.weight", out var lm) ? lm : w["model.embed_tokens.weight"];
        return x.matmul(head.t());
    }

    /// <summary>Mean over tokens of logsumexp(logits) - logits[target].</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets)
    {
        var flat = logits.reshape(-1, logits.shape[^1]);
        var picked = flat.gather(1, targets.reshape(-1, 1)).squeeze(1);
        return (flat.logsumexp(1) - picked).mean();
    }

    /// <summary>One AdamW step from zero moments (torch's arithmetic): decay only on matrices, as the engines default to.</summary>
    public static Dictionary<string, Tensor> AdamWStep(Dictionary<string, Tensor> w, double lr, double beta1, double beta2, double eps, double decay)
    {
        var next = new Dictionary<string, Tensor>();
        using var _ = no_grad();
        foreach (var (name, p) in w)
        {
            var g = p.grad!;
            var m = g * (1 - beta1);
            var v = g * g * (1 - beta2);
            var mHat = m / (1 - beta1);
            var vHat = v / (1 - beta2);
            var decayed = p.dim() >= 2 ? p * (1 - lr * decay) : p.clone();
            next[name] = decayed - lr * mHat / (vHat.sqrt() + eps);
        }
        return next;
    }
}
