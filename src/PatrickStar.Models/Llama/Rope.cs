using static TorchSharp.torch;

namespace PatrickStar.Models.Llama;

/// <summary>Rotary position embeddings as HF's LlamaRotaryEmbedding computes them (rotate_half convention).</summary>
public static class Rope
{
    /// <summary>
    /// The rotation frequencies, one per pair of dimensions: θ^(-2i/d) for i &lt; d/2, with Llama-3's scaling when given
    /// (wavelengths longer than original/low_freq_factor slowed by factor, shorter than original/high_freq_factor kept,
    /// and a smooth blend between).
    /// </summary>
    public static double[] InverseFrequencies(int headSize, double theta, RopeScaling? scaling)
    {
        var inv = new double[headSize / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / headSize);
        if (scaling is not { } s) return inv;
        double lowFreqWavelength = s.OriginalMaxPositions / s.LowFreqFactor;
        double highFreqWavelength = s.OriginalMaxPositions / s.HighFreqFactor;
        for (int i = 0; i < inv.Length; i++)
        {
            double wavelength = 2 * Math.PI / inv[i];
            if (wavelength > lowFreqWavelength) inv[i] /= s.Factor;
            else if (wavelength >= highFreqWavelength)
            {
                double smooth = (s.OriginalMaxPositions / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
            }
        }
        return inv;
    }

    /// <summary>cos and sin tables [T, d] for positions start .. start + T - 1, in <paramref name="dtype"/> (computed in fp32).</summary>
    public static (Tensor Cos, Tensor Sin) Tables(double[] inverseFrequencies, long start, long t, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(inverseFrequencies.Select(f => (float)f).ToArray(), device: device);
        var positions = arange(start, start + t, dtype: ScalarType.Float32, device: device);
        var freqs = positions.outer(inv);
        var angles = cat(new[] { freqs, freqs }, dim: -1);
        return (angles.cos().to(dtype).MoveToOuterDisposeScope(), angles.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>x·cos + rotate_half(x)·sin for x [B, heads, T, d], where rotate_half(x) = [-x₂, x₁] over the two halves of d.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var rotated = cat(new[] { -x.narrow(-1, half, half), x.narrow(-1, 0, half) }, dim: -1);
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }
}
