using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using PatrickStar.Optimizer;

namespace PatrickStar.Benchmarks;

/// <summary>
/// The memory bound of one variant of the Adam kernel: timings of <see cref="AdamTrafficProbe"/> with that variant's
/// element types. The bound is the best repetition (the most the memory delivered); the median is reported beside it.
/// </summary>
public sealed record AdamBound(ElementType GradType, ElementType? ParamType, long Elements, List<double> Seconds)
{
    /// <summary>Bytes moved per element: grad in, master, momentum and variance in and out, the parameter copy out.</summary>
    public int BytesPerElement => LowPrecision.SizeOf(GradType) + 24 + (ParamType is { } p ? LowPrecision.SizeOf(p) : 0);

    public double BestElementsPerSecond => Elements / Seconds.Min();

    public double MedianElementsPerSecond => Elements / Measure.Median(Seconds);
}

/// <summary>
/// A kernel with exactly the Adam step's memory traffic and almost none of its arithmetic: per element it reads the
/// gradient, master weight, momentum and variance, writes the last three back in place (m += g, v += g, w += g) and,
/// optionally, the weight narrowed to a 16-bit parameter (truncated: cheaper than rounding). Same tiles, threads and
/// vector width as <see cref="CpuAdamKernel"/>, so its speed is the most any Adam implementation can reach here.
/// Ordinary stores: non-temporal ones would bypass the cache lines just read.
/// </summary>
public static unsafe class AdamTrafficProbe
{
    /// <summary>
    /// Times the probe over fresh arrays of <paramref name="elements"/> elements (the sizes the kernel is timed on,
    /// so that caches play the same part): <paramref name="reps"/> timed runs after <paramref name="warmup"/>.
    /// </summary>
    public static AdamBound Measure(long elements, ElementType gradType, ElementType? paramType, int warmup = 1, int reps = 5)
    {
        RequireSupported(gradType);
        if (paramType is { } pt) RequireSupported(pt);
        var master = Allocate(elements, ElementType.Float32);
        var momentum = Allocate(elements, ElementType.Float32);
        var variance = Allocate(elements, ElementType.Float32);
        var grad = Allocate(elements, gradType);
        var param = paramType is { } t ? Allocate(elements, t) : null;
        try
        {
            // Written, not just allocated: untouched pages all map one zero page, which would sit in the cache.
            Fill((float*)master, (float*)momentum, (float*)variance, grad, gradType, param, paramType ?? gradType, elements);
            var seconds = Benchmarks.Measure.Repeat(warmup, reps, () =>
                Run((float*)master, (float*)momentum, (float*)variance, grad, gradType, param, paramType ?? gradType, elements));
            return new AdamBound(gradType, paramType, elements, seconds);
        }
        finally
        {
            NativeMemory.AlignedFree(master);
            NativeMemory.AlignedFree(momentum);
            NativeMemory.AlignedFree(variance);
            NativeMemory.AlignedFree(grad);
            if (param != null) NativeMemory.AlignedFree(param);
        }
    }

    /// <summary>
    /// One pass: master, momentum, variance += grad, in place; <paramref name="param"/> (null: none) receives the new
    /// master. Element types Float32 or BFloat16; tiled and threaded as <see cref="CpuAdamKernel.Step(float*, float*, float*, void*, ElementType, void*, ElementType, long, in AdamHyperparameters, SimdWidth, int)"/>.
    /// </summary>
    public static void Run(float* master, float* momentum, float* variance, void* grad, ElementType gradType,
                           void* param, ElementType paramType, long count, SimdWidth width = SimdWidth.Auto)
    {
        RequireSupported(gradType);
        RequireSupported(paramType);
        var pass = new Pass(master, momentum, variance, grad, gradType == ElementType.BFloat16,
                            param, paramType == ElementType.BFloat16, LowPrecision.Resolve(width));
        ForTiles(count, pass.Run);
    }

    private static void RequireSupported(ElementType type)
    {
        if (type is not (ElementType.Float32 or ElementType.BFloat16))
            throw new ArgumentException($"The Adam traffic probe handles Float32 and BFloat16 elements, not {type}.", nameof(type));
    }

    private static void* Allocate(long elements, ElementType type) =>
        NativeMemory.AlignedAlloc((nuint)(elements * LowPrecision.SizeOf(type)), 64);

    private static void Fill(float* master, float* momentum, float* variance, void* grad, ElementType gradType,
                             void* param, ElementType paramType, long count)
    {
        ForTiles(count, (from, to) =>
        {
            int n = (int)(to - from);
            new Span<float>(master + from, n).Fill(1f);
            new Span<float>(momentum + from, n).Clear();
            new Span<float>(variance + from, n).Clear();
            if (gradType == ElementType.Float32) new Span<float>((float*)grad + from, n).Fill(1e-3f);
            else new Span<ushort>((ushort*)grad + from, n).Fill(0x3A83); // bf16 of 1e-3
            if (param != null)
            {
                if (paramType == ElementType.Float32) new Span<float>((float*)param + from, n).Clear();
                else new Span<ushort>((ushort*)param + from, n).Clear();
            }
        });
    }

    /// <summary>The kernel's split: tiles of <see cref="CpuAdamKernel.TileElements"/> on every core; one tile on the caller.</summary>
    private static void ForTiles(long count, Action<long, long> body)
    {
        const int tile = CpuAdamKernel.TileElements;
        long tiles = (count + tile - 1) / tile;
        if (tiles <= 1)
        {
            body(0, count);
            return;
        }
        Parallel.For(0L, tiles, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            t => body(t * tile, Math.Min(count, (t + 1) * tile)));
    }

    private readonly struct Pass(float* master, float* momentum, float* variance, void* grad, bool bf16Grad,
                                 void* param, bool bf16Param, SimdWidth width)
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(long start, long end)
        {
            long i = width switch
            {
                SimdWidth.Vector512 => Run512(start, end),
                SimdWidth.Vector256 => Run256(start, end),
                _ => start,
            };
            for (; i < end; i++)
            {
                float g = bf16Grad ? LowPrecision.BFloat16ToSingle(((ushort*)grad)[i]) : ((float*)grad)[i];
                momentum[i] += g;
                variance[i] += g;
                float w = master[i] += g;
                if (param == null) continue;
                if (bf16Param) ((ushort*)param)[i] = (ushort)(BitConverter.SingleToUInt32Bits(w) >> 16);
                else ((float*)param)[i] = w;
            }
        }

        // Two vectors per iteration, as the kernel (one 16-bit load widens to two fp32 vectors).
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private long Run512(long i, long end)
        {
            const int lanes = 16;
            for (; i + 2 * lanes <= end; i += 2 * lanes)
            {
                Vector512<float> g0, g1;
                if (bf16Grad)
                {
                    var (lower, upper) = Vector512.Widen(Vector512.Load((ushort*)grad + i));
                    (g0, g1) = (LowPrecision.BFloat16ToSingle(lower), LowPrecision.BFloat16ToSingle(upper));
                }
                else (g0, g1) = (Vector512.Load((float*)grad + i), Vector512.Load((float*)grad + i + lanes));
                (Vector512.Load(momentum + i) + g0).Store(momentum + i);
                (Vector512.Load(momentum + i + lanes) + g1).Store(momentum + i + lanes);
                (Vector512.Load(variance + i) + g0).Store(variance + i);
                (Vector512.Load(variance + i + lanes) + g1).Store(variance + i + lanes);
                var w0 = Vector512.Load(master + i) + g0;
                var w1 = Vector512.Load(master + i + lanes) + g1;
                w0.Store(master + i);
                w1.Store(master + i + lanes);
                if (param == null) continue;
                if (bf16Param)
                    Vector512.Narrow(Vector512.ShiftRightLogical(w0.AsUInt32(), 16), Vector512.ShiftRightLogical(w1.AsUInt32(), 16))
                        .Store((ushort*)param + i);
                else
                {
                    w0.Store((float*)param + i);
                    w1.Store((float*)param + i + lanes);
                }
            }
            return i;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private long Run256(long i, long end)
        {
            const int lanes = 8;
            for (; i + 2 * lanes <= end; i += 2 * lanes)
            {
                Vector256<float> g0, g1;
                if (bf16Grad)
                {
                    var (lower, upper) = Vector256.Widen(Vector256.Load((ushort*)grad + i));
                    (g0, g1) = (LowPrecision.BFloat16ToSingle(lower), LowPrecision.BFloat16ToSingle(upper));
                }
                else (g0, g1) = (Vector256.Load((float*)grad + i), Vector256.Load((float*)grad + i + lanes));
                (Vector256.Load(momentum + i) + g0).Store(momentum + i);
                (Vector256.Load(momentum + i + lanes) + g1).Store(momentum + i + lanes);
                (Vector256.Load(variance + i) + g0).Store(variance + i);
                (Vector256.Load(variance + i + lanes) + g1).Store(variance + i + lanes);
                var w0 = Vector256.Load(master + i) + g0;
                var w1 = Vector256.Load(master + i + lanes) + g1;
                w0.Store(master + i);
                w1.Store(master + i + lanes);
                if (param == null) continue;
                if (bf16Param)
                    Vector256.Narrow(Vector256.ShiftRightLogical(w0.AsUInt32(), 16), Vector256.ShiftRightLogical(w1.AsUInt32(), 16))
                        .Store((ushort*)param + i);
                else
                {
                    w0.Store((float*)param + i);
                    w1.Store((float*)param + i + lanes);
                }
            }
            return i;
        }
    }
}
