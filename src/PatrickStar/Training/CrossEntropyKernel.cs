using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>
/// <see cref="FusedCrossEntropy.BlockLossSum"/> with the gradient, in one fused pass per row on the CPU: the row's maximum,
/// then its exponentials (into a scratch row of the worker's, which stays in the cache) and their sum, then the gradient
/// written over the logits in their own dtype (fp32, or bf16 rounded as a cast of the fp32 gradient rounds). The tensor-op
/// form makes about eight passes over an fp32 copy of the block (upcast, max, shift, exp, sum, scale, scatter, downcast)
/// and allocates that copy; this reads each logit twice and writes it once, and allocates nothing of the block's size.
/// Same arithmetic in the same order (shift by the row maximum, exp, sum, log; gradient exp·(1 / (sum·n)), −1/n added at
/// the target), with the sums in fp64: results agree with the tensor form to fp32 rounding.
/// </summary>
public static unsafe class CrossEntropyKernel
{
    /// <summary>Off: the tensor ops run instead (tests compare the two).</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>
    /// The vector width the rows run at: <see cref="SimdWidth.Auto"/> (the default) takes the widest this CPU accelerates
    /// (AVX-512, AVX2, else scalar); tests set each width and compare it with the scalar form and the tensor ops.
    /// </summary>
    public static SimdWidth Width { get; set; } = SimdWidth.Auto;

    /// <summary>Whether the kernel runs (for logits in host memory): the widths are detected, so on every CPU unless turned off.</summary>
    public static bool Available => Enabled;

    /// <summary>Whether the kernel takes these logits [r, V] and targets [r, 1] (else the tensor ops do): host memory, contiguous, fp32 or bf16.</summary>
    public static bool Applies(Tensor logits, Tensor targets) =>
        Available && logits.device_type == DeviceType.CPU && logits.dim() == 2 && logits.is_contiguous()
        && logits.dtype is ScalarType.Float32 or ScalarType.BFloat16
        && targets.dtype == ScalarType.Int64 && targets.is_contiguous() && targets.numel() == logits.shape[0];

    /// <summary>
    /// The summed loss of the rows of <paramref name="logits"/> (an fp64 scalar), whose values become d(mean loss over
    /// <paramref name="n"/> rows)/d(logits). Only where <see cref="Applies"/>.
    /// </summary>
    public static Tensor LossSumWritingGradient(Tensor logits, Tensor targets, long n)
    {
        long rows = logits.shape[0], v = logits.shape[1];
        var type = logits.dtype == ScalarType.Float32 ? ElementType.Float32 : ElementType.BFloat16;
        byte* data = (byte*)TensorMemory.Address(logits);
        long* target = (long*)TensorMemory.Address(targets);
        for (long r = 0; r < rows; r++)
            if ((ulong)target[r] >= (ulong)v) throw new ArgumentException($"target {target[r]} is outside the vocabulary of {v}.");
        long rowBytes = v * LowPrecision.SizeOf(type);
        var losses = new double[rows];
        float count = n, minusOneOverN = (float)(-1.0 / n);
        int workers = (int)Math.Min(rows, Math.Max(1, get_num_threads()));
        var width = LowPrecision.Resolve(Width);
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
        {
            if (scratch is null || scratch.Length < v) scratch = new float[v]; // one per thread, kept: no large allocation per call
            fixed (float* e = scratch)
                for (long r = worker; r < rows; r += workers)
                    losses[r] = width switch
                    {
                        SimdWidth.Vector512 => Row512(data + r * rowBytes, type, v, target[r], e, count, minusOneOverN),
                        SimdWidth.Vector256 => Row256(data + r * rowBytes, type, v, target[r], e, count, minusOneOverN),
                        _ => RowScalar(data + r * rowBytes, type, v, target[r], e, count, minusOneOverN),
                    };
        });
        double total = 0;
        foreach (double l in losses) total += l;
        return tensor(total, dtype: ScalarType.Float64, device: logits.device);
    }

    [ThreadStatic] private static float[]? scratch;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Row512(byte* row, ElementType type, long v, long target, float* e, float n, float minusOneOverN)
    {
        const int lanes = 16; // Vector512<float>.Count
        long whole = v / (2 * lanes) * (2 * lanes);
        var max = Vector512.Create(float.NegativeInfinity);
        for (long i = 0; i < whole; i += 2 * lanes)
        {
            var (a, b) = LowPrecision.Load2x512(row, type, i);
            max = Vector512.Max(max, Vector512.Max(a, b));
        }
        float m = float.NegativeInfinity;
        for (int k = 0; k < lanes; k++) m = Math.Max(m, max.GetElement(k));
        for (long i = whole; i < v; i++) m = Math.Max(m, LowPrecision.Load(row, type, i));

        var shift = Vector512.Create(m);
        var sum = Vector512<double>.Zero;
        for (long i = 0; i < whole; i += 2 * lanes)
        {
            var (a, b) = LowPrecision.Load2x512(row, type, i);
            var ea = Vector512.Exp(a - shift);
            var eb = Vector512.Exp(b - shift);
            ea.Store(e + i);
            eb.Store(e + i + lanes);
            var (a0, a1) = Vector512.Widen(ea);
            var (b0, b1) = Vector512.Widen(eb);
            sum += (a0 + a1) + (b0 + b1);
        }
        float total = (float)(Vector512.Sum(sum) + ExpTail(row, type, whole, v, m, e));
        double loss = Loss(row, type, target, m, total);
        float scale = 1f / (total * n);
        var s = Vector512.Create(scale);
        for (long i = 0; i < whole; i += 2 * lanes)
            LowPrecision.Store2x512(row, type, i, Vector512.Load(e + i) * s, Vector512.Load(e + i + lanes) * s);
        WriteTail(row, type, whole, v, target, e, scale, minusOneOverN);
        return loss;
    }

    /// <summary><see cref="Row512"/> at AVX2's width (16 elements a step as two 8-lane halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double Row256(byte* row, ElementType type, long v, long target, float* e, float n, float minusOneOverN)
    {
        const int lanes = 8; // Vector256<float>.Count
        long whole = v / (2 * lanes) * (2 * lanes);
        var max = Vector256.Create(float.NegativeInfinity);
        for (long i = 0; i < whole; i += 2 * lanes)
        {
            var (a, b) = LowPrecision.Load2x256(row, type, i);
            max = Vector256.Max(max, Vector256.Max(a, b));
        }
        float m = float.NegativeInfinity;
        for (int k = 0; k < lanes; k++) m = Math.Max(m, max.GetElement(k));
        for (long i = whole; i < v; i++) m = Math.Max(m, LowPrecision.Load(row, type, i));

        var shift = Vector256.Create(m);
        var sum = Vector256<double>.Zero;
        for (long i = 0; i < whole; i += 2 * lanes)
        {
            var (a, b) = LowPrecision.Load2x256(row, type, i);
            var ea = Vector256.Exp(a - shift);
            var eb = Vector256.Exp(b - shift);
            ea.Store(e + i);
            eb.Store(e + i + lanes);
            var (a0, a1) = Vector256.Widen(ea);
            var (b0, b1) = Vector256.Widen(eb);
            sum += (a0 + a1) + (b0 + b1);
        }
        float total = (float)(Vector256.Sum(sum) + ExpTail(row, type, whole, v, m, e));
        double loss = Loss(row, type, target, m, total);
        float scale = 1f / (total * n);
        var s = Vector256.Create(scale);
        for (long i = 0; i < whole; i += 2 * lanes)
            LowPrecision.Store2x256(row, type, i, Vector256.Load(e + i) * s, Vector256.Load(e + i + lanes) * s);
        WriteTail(row, type, whole, v, target, e, scale, minusOneOverN);
        return loss;
    }

    /// <summary>The reference form, one element at a time (also where the CPU accelerates no vectors).</summary>
    private static double RowScalar(byte* row, ElementType type, long v, long target, float* e, float n, float minusOneOverN)
    {
        float m = float.NegativeInfinity;
        for (long i = 0; i < v; i++) m = Math.Max(m, LowPrecision.Load(row, type, i));
        float total = (float)ExpTail(row, type, 0, v, m, e);
        double loss = Loss(row, type, target, m, total);
        WriteTail(row, type, 0, v, target, e, 1f / (total * n), minusOneOverN);
        return loss;
    }

    /// <summary>exp(x − m) of elements [from, v) into the scratch row; their sum in fp64.</summary>
    private static double ExpTail(byte* row, ElementType type, long from, long v, float m, float* e)
    {
        double sum = 0;
        for (long i = from; i < v; i++)
        {
            e[i] = MathF.Exp(LowPrecision.Load(row, type, i) - m);
            sum += e[i];
        }
        return sum;
    }

    /// <summary>The row's loss log(Σ) − (x_target − m); read before any gradient is written over the row.</summary>
    private static double Loss(byte* row, ElementType type, long target, float m, float total) =>
        MathF.Log(total) - (LowPrecision.Load(row, type, target) - m);

    /// <summary>The gradient of elements [from, v), then the target's −1/n.</summary>
    private static void WriteTail(byte* row, ElementType type, long from, long v, long target, float* e, float scale, float minusOneOverN)
    {
        for (long i = from; i < v; i++) LowPrecision.Store(row, type, i, e[i] * scale);
        LowPrecision.Store(row, type, target, e[target] * scale + minusOneOverN);
    }
}
