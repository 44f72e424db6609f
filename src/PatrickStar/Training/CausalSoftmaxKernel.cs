using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using PatrickStar.Optimizer;

namespace PatrickStar.Training;

/// <summary>
/// Causal softmax of square score matrices in host memory, forward and backward, touching only the causal part: row i of
/// each [T, T] matrix is softmax(scale · s[0..i]) followed by zeros. The masked form it replaces (an additive −inf mask,
/// then libtorch's softmax over whole rows) computes exp over the masked half too, through −inf and NaN, and its backward
/// reads and writes whole rows. Each row is read once for its maximum and once for its exponentials (kept in fp32 in a
/// scratch row of the worker's, so that each probability is rounded once), then written; sums are in fp32 vector lanes
/// (at most T/16 terms each), as libtorch's softmax sums. exp: .NET's for fp32 probabilities, <see cref="ShortExp"/> for
/// 16-bit ones (the forward's largest cost: 0.67-0.70 → 0.5 ms on one thread for 24 × 256 rows of 256).
/// Vectors at the widest width the CPU accelerates (AVX-512, AVX2), else one element at a time; each width is tested
/// against the scalar form.
/// </summary>
public static unsafe class CausalSoftmaxKernel
{
    /// <summary>
    /// probs ← causal softmax of scale · scores, for <paramref name="matrices"/> matrices of [t, t] elements of
    /// <paramref name="type"/>, contiguous. <paramref name="threads"/> workers take rows in turn (row i costs i + 1 elements);
    /// <paramref name="width"/>: <see cref="SimdWidth.Auto"/> runs the widest the CPU accelerates, tests set each.
    /// </summary>
    public static void Forward(void* scores, void* probs, ElementType type, long matrices, int t, float scale, int threads, SimdWidth width = SimdWidth.Auto)
    {
        width = LowPrecision.Resolve(width);
        long rows = matrices * t;
        int workers = Workers(rows, threads);
        if (workers == 1)
        {
            ForwardRows(scores, probs, type, t, scale, width, 0, 1, rows);
            return;
        }
        nint s = (nint)scores, p = (nint)probs;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers },
            worker => ForwardRows((void*)s, (void*)p, type, t, scale, width, worker, workers, rows));
    }

    /// <summary>
    /// gradScores ← d(loss)/d(scores) from the probabilities <see cref="Forward"/> wrote and d(loss)/d(probs):
    /// scale · p · (g − Σ p·g) over each row's causal part, zeros elsewhere.
    /// </summary>
    public static void Backward(void* probs, void* gradProbs, void* gradScores, ElementType type, long matrices, int t, float scale, int threads,
                                SimdWidth width = SimdWidth.Auto)
    {
        width = LowPrecision.Resolve(width);
        long rows = matrices * t;
        int workers = Workers(rows, threads);
        if (workers == 1)
        {
            BackwardRows(probs, gradProbs, gradScores, type, t, scale, width, 0, 1, rows);
            return;
        }
        nint p = (nint)probs, g = (nint)gradProbs, d = (nint)gradScores;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers },
            worker => BackwardRows((void*)p, (void*)g, (void*)d, type, t, scale, width, worker, workers, rows));
    }

    private static int Workers(long rows, int threads) => (int)Math.Max(1, Math.Min(rows, threads));

    [ThreadStatic] private static float[]? scratch;

    /// <summary>Rows first, first + stride, ... of the forward; row r is row r mod t of its matrix.</summary>
    private static void ForwardRows(void* scores, void* probs, ElementType type, int t, float scale, SimdWidth width, long first, long stride, long rows)
    {
        if (scratch is null || scratch.Length < t) scratch = new float[t]; // one per thread, kept
        long rowBytes = (long)t * LowPrecision.SizeOf(type);
        fixed (float* e = scratch)
            for (long r = first; r < rows; r += stride)
            {
                byte* src = (byte*)scores + r * rowBytes, dst = (byte*)probs + r * rowBytes;
                int valid = (int)(r % t) + 1;
                if (width == SimdWidth.Vector512) ForwardRow512(src, dst, type, valid, t, scale, e);
                else if (width == SimdWidth.Vector256) ForwardRow256(src, dst, type, valid, t, scale, e);
                else ForwardScalar(src, dst, type, valid, t, scale, e);
            }
    }

    private static void BackwardRows(void* probs, void* gradProbs, void* gradScores, ElementType type, int t, float scale, SimdWidth width,
                                     long first, long stride, long rows)
    {
        long rowBytes = (long)t * LowPrecision.SizeOf(type);
        for (long r = first; r < rows; r += stride)
        {
            byte* p = (byte*)probs + r * rowBytes, g = (byte*)gradProbs + r * rowBytes, d = (byte*)gradScores + r * rowBytes;
            int valid = (int)(r % t) + 1;
            if (width == SimdWidth.Vector512) BackwardRow512(p, g, d, type, valid, t, scale);
            else if (width == SimdWidth.Vector256) BackwardRow256(p, g, d, type, valid, t, scale);
            else BackwardTail(p, g, d, type, 0, valid, t, scale, DotTail(p, g, type, 0, valid));
        }
    }

    /// <summary>End of the part of a row that whole vector steps cover: the causal part rounded up to a step, within the row.</summary>
    private static int VectorEnd(int valid, int t, int step) => Math.Min((valid + step - 1) / step * step, t / step * step);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardRow512(byte* src, byte* dst, ElementType type, int valid, int t, float scale, float* e)
    {
        const int lanes = 16, step = 2 * lanes;
        int end = VectorEnd(valid, t, step);
        var max = Vector512.Create(float.MinValue);
        for (int k = 0; k < end; k += step)
        {
            var (a, b) = LowPrecision.Load2x512(src, type, k);
            if (k + step > valid) (a, b) = (Keep512(a, valid - k, float.MinValue), Keep512(b, valid - k - lanes, float.MinValue));
            max = Vector512.Max(max, Vector512.Max(a, b));
        }
        var half = Vector256.Max(max.GetLower(), max.GetUpper());
        float m = HorizontalMax(Vector128.Max(half.GetLower(), half.GetUpper()));
        for (int i = end; i < valid; i++) m = Math.Max(m, LowPrecision.Load(src, type, i));

        var shift = Vector512.Create(m);
        var factor = Vector512.Create(scale);
        var sum = Vector512<float>.Zero;
        bool exact = type == ElementType.Float32; // 16-bit probabilities take the shorter exp
        for (int k = 0; k < end; k += step)
        {
            var (a, b) = LowPrecision.Load2x512(src, type, k);
            // Beyond the causal part: exp(0), then 0, so that no lane computes through an extreme value.
            if (k + step > valid) (a, b) = (Keep512(a, valid - k, m), Keep512(b, valid - k - lanes, m));
            var ea = exact ? Vector512.Exp((a - shift) * factor) : ShortExp.Exp((a - shift) * factor);
            var eb = exact ? Vector512.Exp((b - shift) * factor) : ShortExp.Exp((b - shift) * factor);
            if (k + step > valid) (ea, eb) = (Keep512(ea, valid - k, 0f), Keep512(eb, valid - k - lanes, 0f));
            ea.Store(e + k);
            eb.Store(e + k + lanes);
            sum += ea + eb;
        }
        float total = Vector512.Sum(sum) + ExpTail(src, type, end, valid, m, scale, e);
        var inverse = Vector512.Create(1f / total);
        for (int k = 0; k < end; k += step)
            LowPrecision.Store2x512(dst, type, k, Vector512.Load(e + k) * inverse, Vector512.Load(e + k + lanes) * inverse);
        WriteTail(dst, type, end, valid, t, e, 1f / total);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardRow256(byte* src, byte* dst, ElementType type, int valid, int t, float scale, float* e)
    {
        const int lanes = 8, step = 2 * lanes;
        int end = VectorEnd(valid, t, step);
        var max = Vector256.Create(float.MinValue);
        for (int k = 0; k < end; k += step)
        {
            var (a, b) = LowPrecision.Load2x256(src, type, k);
            if (k + step > valid) (a, b) = (Keep256(a, valid - k, float.MinValue), Keep256(b, valid - k - lanes, float.MinValue));
            max = Vector256.Max(max, Vector256.Max(a, b));
        }
        float m = HorizontalMax(Vector128.Max(max.GetLower(), max.GetUpper()));
        for (int i = end; i < valid; i++) m = Math.Max(m, LowPrecision.Load(src, type, i));

        var shift = Vector256.Create(m);
        var factor = Vector256.Create(scale);
        var sum = Vector256<float>.Zero;
        bool exact = type == ElementType.Float32; // 16-bit probabilities take the shorter exp
        for (int k = 0; k < end; k += step)
        {
            var (a, b) = LowPrecision.Load2x256(src, type, k);
            // Beyond the causal part: exp(0), then 0, so that no lane computes through an extreme value.
            if (k + step > valid) (a, b) = (Keep256(a, valid - k, m), Keep256(b, valid - k - lanes, m));
            var ea = exact ? Vector256.Exp((a - shift) * factor) : ShortExp.Exp((a - shift) * factor);
            var eb = exact ? Vector256.Exp((b - shift) * factor) : ShortExp.Exp((b - shift) * factor);
            if (k + step > valid) (ea, eb) = (Keep256(ea, valid - k, 0f), Keep256(eb, valid - k - lanes, 0f));
            ea.Store(e + k);
            eb.Store(e + k + lanes);
            sum += ea + eb;
        }
        float total = Vector256.Sum(sum) + ExpTail(src, type, end, valid, m, scale, e);
        var inverse = Vector256.Create(1f / total);
        for (int k = 0; k < end; k += step)
            LowPrecision.Store2x256(dst, type, k, Vector256.Load(e + k) * inverse, Vector256.Load(e + k + lanes) * inverse);
        WriteTail(dst, type, end, valid, t, e, 1f / total);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow512(byte* p, byte* g, byte* d, ElementType type, int valid, int t, float scale)
    {
        const int lanes = 16, step = 2 * lanes;
        int end = VectorEnd(valid, t, step);
        var dot = Vector512<float>.Zero;
        for (int k = 0; k < end; k += step)
        {
            var (pa, pb) = LowPrecision.Load2x512(p, type, k);
            var (ga, gb) = LowPrecision.Load2x512(g, type, k);
            // Beyond the causal part p is 0, but g is whatever the product made there: kept out of the sum.
            if (k + step > valid) (ga, gb) = (Keep512(ga, valid - k, 0f), Keep512(gb, valid - k - lanes, 0f));
            dot = Vector512.FusedMultiplyAdd(pa, ga, Vector512.FusedMultiplyAdd(pb, gb, dot));
        }
        float total = Vector512.Sum(dot) + DotTail(p, g, type, end, valid);
        var shift = Vector512.Create(total);
        var factor = Vector512.Create(scale);
        for (int k = 0; k < end; k += step)
        {
            var (pa, pb) = LowPrecision.Load2x512(p, type, k);
            var (ga, gb) = LowPrecision.Load2x512(g, type, k);
            if (k + step > valid) (ga, gb) = (Keep512(ga, valid - k, 0f), Keep512(gb, valid - k - lanes, 0f));
            LowPrecision.Store2x512(d, type, k, pa * (ga - shift) * factor, pb * (gb - shift) * factor);
        }
        BackwardTail(p, g, d, type, end, valid, t, scale, total);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardRow256(byte* p, byte* g, byte* d, ElementType type, int valid, int t, float scale)
    {
        const int lanes = 8, step = 2 * lanes;
        int end = VectorEnd(valid, t, step);
        var dot = Vector256<float>.Zero;
        for (int k = 0; k < end; k += step)
        {
            var (pa, pb) = LowPrecision.Load2x256(p, type, k);
            var (ga, gb) = LowPrecision.Load2x256(g, type, k);
            if (k + step > valid) (ga, gb) = (Keep256(ga, valid - k, 0f), Keep256(gb, valid - k - lanes, 0f));
            dot = Vector256.FusedMultiplyAdd(pa, ga, Vector256.FusedMultiplyAdd(pb, gb, dot));
        }
        float total = Vector256.Sum(dot) + DotTail(p, g, type, end, valid);
        var shift = Vector256.Create(total);
        var factor = Vector256.Create(scale);
        for (int k = 0; k < end; k += step)
        {
            var (pa, pb) = LowPrecision.Load2x256(p, type, k);
            var (ga, gb) = LowPrecision.Load2x256(g, type, k);
            if (k + step > valid) (ga, gb) = (Keep256(ga, valid - k, 0f), Keep256(gb, valid - k - lanes, 0f));
            LowPrecision.Store2x256(d, type, k, pa * (ga - shift) * factor, pb * (gb - shift) * factor);
        }
        BackwardTail(p, g, d, type, end, valid, t, scale, total);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector128<float> x) =>
        Math.Max(Math.Max(x.GetElement(0), x.GetElement(1)), Math.Max(x.GetElement(2), x.GetElement(3)));

    /// <summary>The first <paramref name="count"/> lanes of <paramref name="x"/>, the rest <paramref name="fill"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Keep512(Vector512<float> x, int count, float fill) =>
        Vector512.ConditionalSelect(Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle(), x, Vector512.Create(fill));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Keep256(Vector256<float> x, int count, float fill) =>
        Vector256.ConditionalSelect(Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(count)).AsSingle(), x, Vector256.Create(fill));

    /// <summary>exp(scale · (x − m)) of elements [from, valid) into the scratch row; their sum.</summary>
    private static float ExpTail(byte* src, ElementType type, int from, int valid, float m, float scale, float* e)
    {
        float sum = 0;
        for (int i = from; i < valid; i++) sum += e[i] = MathF.Exp((LowPrecision.Load(src, type, i) - m) * scale);
        return sum;
    }

    /// <summary>A forward row one element at a time (the reference the vector widths are tested against).</summary>
    private static void ForwardScalar(byte* src, byte* dst, ElementType type, int valid, int t, float scale, float* e)
    {
        float m = float.MinValue;
        for (int i = 0; i < valid; i++) m = Math.Max(m, LowPrecision.Load(src, type, i));
        WriteTail(dst, type, 0, valid, t, e, 1f / ExpTail(src, type, 0, valid, m, scale, e));
    }

    /// <summary>Probabilities of elements [from, valid), then zeros to the row's end.</summary>
    private static void WriteTail(byte* dst, ElementType type, int from, int valid, int t, float* e, float inverse)
    {
        for (int i = from; i < valid; i++) LowPrecision.Store(dst, type, i, e[i] * inverse);
        ZeroFrom(dst, type, Math.Max(from, valid), t);
    }

    private static float DotTail(byte* p, byte* g, ElementType type, int from, int valid)
    {
        float sum = 0;
        for (int i = from; i < valid; i++) sum += LowPrecision.Load(p, type, i) * LowPrecision.Load(g, type, i);
        return sum;
    }

    /// <summary>Gradients of elements [from, valid) given the row's Σ p·g, then zeros to the row's end (from 0: the scalar form).</summary>
    private static void BackwardTail(byte* p, byte* g, byte* d, ElementType type, int from, int valid, int t, float scale, float dot)
    {
        for (int i = from; i < valid; i++)
            LowPrecision.Store(d, type, i, LowPrecision.Load(p, type, i) * (LowPrecision.Load(g, type, i) - dot) * scale);
        ZeroFrom(d, type, Math.Max(from, valid), t);
    }

    private static void ZeroFrom(byte* row, ElementType type, int from, int t)
    {
        int size = LowPrecision.SizeOf(type);
        if (from < t) new Span<byte>(row + (long)from * size, (t - from) * size).Clear();
    }
}
