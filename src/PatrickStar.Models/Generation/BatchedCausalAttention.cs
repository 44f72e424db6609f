using PatrickStar.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Models.Generation;

/// <summary>
/// Causal self-attention as two batched products around a softmax, for 16-bit activations on a CPU: there libtorch's fused
/// (flash) kernel runs at a fraction of the matmul peak (GPT-2 6L h768, seq 256: 4.2 ms forward and 15 ms forward + backward
/// per layer, against 2.3 ms for its products alone), while oneDNN's batched products run near it. The price is the score
/// matrix kept for backward (batch·heads·seq² elements), so it is used only where that is small next to a block's other
/// activations, and without attention dropout (whose random stream would differ from the fused kernel's).
/// </summary>
public static class BatchedCausalAttention
{
    /// <summary>Longest sequence run this way: its saved probabilities stay within about a block's other activations.</summary>
    public const long MaxSequence = 512;

    /// <summary>Whether attention over activations of <paramref name="dtype"/> on <paramref name="device"/> runs this way.</summary>
    public static bool Applies(ScalarType dtype, Device device, long sequence, double dropout) =>
        device.type == DeviceType.CPU && dtype == ScalarType.BFloat16 && sequence <= MaxSequence && dropout == 0;

    /// <summary>
    /// y [B, T, h] from the fused projection qkv [B, T, 3h] (q, k, v side by side, each [B, T, heads, d]) with
    /// y = softmax(q·kᵀ/√d + causal mask)·v per head, heads merged back. Autograd differentiates it.
    /// </summary>
    public static Tensor Attend(Tensor qkv, int heads)
    {
        long b = qkv.shape[0], t = qkv.shape[1], h = qkv.shape[2] / 3, d = h / heads;
        using var scope = NewDisposeScope();
        // One copy puts q, k and v head-major ([3, B·heads, T, d]); q and k are saved by the products as views of it.
        var split = qkv.view(b, t, 3, heads, d).permute(2, 0, 3, 1, 4).contiguous().view(3, b * heads, t, d);
        var (q, k, v) = (split[0], split[1], split[2]);
        double scale = 1.0 / Math.Sqrt(d);
        var probs = CausalSoftmax.Applies(qkv.dtype, qkv.device)
            ? CausalSoftmax.Apply(bmm(q, k.transpose(1, 2)), scale) // the scale and the mask inside the kernel, which skips the masked half
            : MaskedSoftmax(q, k, scale);
        var y = bmm(probs, v);
        return y.view(b, heads, t, d).transpose(1, 2).contiguous().view(b, t, h).MoveToOuterDisposeScope();
    }

    /// <summary>The tensor-op form: the mask enters as the product's addend, scores = mask + (q·kᵀ)·scale in one pass, then softmax over whole rows.</summary>
    private static Tensor MaskedSoftmax(Tensor q, Tensor k, double scale)
    {
        long t = q.shape[1];
        using var mask = full(t, t, double.NegativeInfinity, dtype: q.dtype, device: q.device).triu_(1);
        using var scores = baddbmm(q, k.transpose(1, 2), mask, beta: 1, alpha: (float)scale); // TorchSharp takes the addend last
        return scores.softmax(-1);
    }
}
