using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PatrickStar.Optimizer;

/// <summary>
/// The sum of squares of fp32, bf16 or fp16 values in host memory, in one read of the data: 16-bit values are widened in
/// registers, where the tensor route (upcast to an fp32 copy, then vector_norm) writes and reads twice the data's size
/// again. Vector lanes sum squares in fp32 over short runs (32 values per lane at most) and the runs are summed in fp64,
/// so the result is at least as accurate as vector_norm's fp32 accumulation.
/// </summary>
public static unsafe class SquaredNormKernel
{
    /// <summary>Elements summed in fp32 before the partial sum is added in fp64.</summary>
    private const int Run = 1024;

    /// <summary>Σ x² over <paramref name="count"/> elements; <paramref name="threads"/> &lt;= 0 uses every core.</summary>
    public static double SumOfSquares(void* data, ElementType type, long count, SimdWidth width = SimdWidth.Auto, int threads = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        LowPrecision.SizeOf(type);
        if (count == 0) return 0;
        if (data == null) throw new ArgumentNullException(nameof(data));
        var w = LowPrecision.Resolve(width);
        long tiles = (count + CpuAdamKernel.TileElements - 1) / CpuAdamKernel.TileElements;
        int workers = threads > 0 ? threads : Environment.ProcessorCount;
        if (tiles == 1 || workers == 1) return Range(data, type, 0, count, w);
        var partial = new double[tiles];
        nint address = (nint)data;
        Parallel.For(0L, tiles, new ParallelOptions { MaxDegreeOfParallelism = workers }, t =>
            partial[t] = Range((void*)address, type, t * CpuAdamKernel.TileElements, Math.Min(count, (t + 1) * CpuAdamKernel.TileElements), w));
        double total = 0;
        foreach (var p in partial) total += p; // in tile order: the same result for any thread count
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Range(void* data, ElementType type, long start, long end, SimdWidth width)
    {
        double total = 0;
        for (long i = start; i < end; i += Run)
            total += Squares(data, type, i, Math.Min(end, i + Run), width);
        return total;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Squares(void* data, ElementType type, long start, long end, SimdWidth width)
    {
        long i = start;
        double sum = 0;
        if (width == SimdWidth.Vector512)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 2 * Vector512<float>.Count <= end; i += 2 * Vector512<float>.Count)
            {
                var (lower, upper) = LowPrecision.Load2x512(data, type, i);
                acc += lower * lower + upper * upper;
            }
            sum = Vector512.Sum(acc);
        }
        else if (width == SimdWidth.Vector256)
        {
            var acc = Vector256<float>.Zero;
            for (; i + 2 * Vector256<float>.Count <= end; i += 2 * Vector256<float>.Count)
            {
                var (lower, upper) = LowPrecision.Load2x256(data, type, i);
                acc += lower * lower + upper * upper;
            }
            sum = Vector256.Sum(acc);
        }
        for (; i < end; i++)
        {
            double x = LowPrecision.Load(data, type, i);
            sum += x * x; // the scalar path (no vectors, or the tail) sums in fp64
        }
        return sum;
    }
}
