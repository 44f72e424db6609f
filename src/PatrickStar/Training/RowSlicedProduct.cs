using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>
/// A tall product C [M, n] (β)+= Aᵀ·B, for A [k, M] and B [k, n] with a short k, made a slice of C's rows at a time: the LM
/// head's d/dW = gᵀ·x ([V, h] from a batch's N rows). Whole, oneDNN runs the bf16 form of that shape far below its peak
/// (measured here, 2 threads: [50257×512]ᵀ·[512×768] 98-104 ms, 390-400 GFLOPS; in slices of 8192 rows 61-62 ms, 640
/// GFLOPS; alike for N 256-2048 and h 768-2048), while the fp32 form runs the same either way. Every element's sum is over
/// the same k terms, so the slices change nothing but the speed.
/// </summary>
public static class RowSlicedProduct
{
    /// <summary>Rows of C per slice: 4096-16384 measured alike; smaller slices lose to per-call overhead.</summary>
    public const long SliceRows = 8192;

    /// <summary>
    /// <paramref name="result"/> [M, n] = <paramref name="beta"/>·result + aᵀ·b (beta 0: result's old values are not read,
    /// not even a NaN), for <paramref name="a"/> [k, M] and <paramref name="b"/> [k, n]; one product when M fits a slice.
    /// </summary>
    public static void AddTransposedA(Tensor result, Tensor a, Tensor b, float beta)
    {
        long m = result.shape[0];
        if (a.shape[1] != m || a.shape[0] != b.shape[0] || b.shape[1] != result.shape[1])
            throw new ArgumentException($"a row-sliced product needs result [M, n], a [k, M], b [k, n]; got result [{string.Join(", ", result.shape)}], " +
                                        $"a [{string.Join(", ", a.shape)}], b [{string.Join(", ", b.shape)}].");
        for (long start = 0; start < m; start += SliceRows)
        {
            long rows = Math.Min(SliceRows, m - start);
            using var into = result.narrow(0, start, rows);
            using var part = a.narrow(1, start, rows);
            using var partT = part.t();
            into.addmm_(partT, b, beta: beta);
        }
    }
}
