using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PatrickStar.Optimizer;

/// <summary>
/// One Adam step's settings. <paramref name="Step"/> counts from 1 (it drives bias correction);
/// <paramref name="InverseLossScale"/> multiplies every gradient before use (1 / loss scale).
/// <paramref name="DecoupledWeightDecay"/>: AdamW (decay the weight) instead of Adam (L2 term in the gradient).
/// </summary>
public readonly record struct AdamHyperparameters(
    double LearningRate, double Beta1, double Beta2, double Eps, double WeightDecay,
    bool DecoupledWeightDecay, long Step, double InverseLossScale = 1.0);

/// <summary>
/// Adam / AdamW over raw memory in one fused pass per element: read the gradient (fp32, bf16 or fp16)
/// and the fp32 master weight, momentum and variance, write all three back and, optionally, the weight
/// narrowed to the compute precision. Memory traffic dominates the cost, so each element is read and
/// written once, with everything in between done in registers. Same formula and operation order as torch.optim.AdamW and
/// <see cref="TensorAdam"/>; no fused multiply-adds, so every width (and every machine) gives the same
/// bits as the scalar path.
/// </summary>
public static unsafe class CpuAdamKernel
{
    /// <summary>Elements per parallel work item: a multiple of every vector block, big enough to amortize scheduling.</summary>
    public const int TileElements = 1 << 16;

    /// <summary>The width <see cref="SimdWidth.Auto"/> runs at on this machine.</summary>
    public static SimdWidth Best => LowPrecision.Best;

    /// <summary>
    /// Updates <paramref name="count"/> elements in place. <paramref name="master"/>, <paramref name="momentum"/>
    /// and <paramref name="variance"/> are fp32; <paramref name="grad"/> holds <paramref name="gradType"/>;
    /// <paramref name="param"/> (null: none written) receives the new master in <paramref name="paramType"/>.
    /// <paramref name="threads"/> &lt;= 0 uses every core; counts up to one tile run on the calling thread.
    /// </summary>
    public static void Step(float* master, float* momentum, float* variance, void* grad, ElementType gradType,
                            void* param, ElementType paramType, long count, in AdamHyperparameters h,
                            SimdWidth width = SimdWidth.Auto, int threads = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(h.Step, 1L, "h.Step");
        LowPrecision.SizeOf(gradType);  // validates the enum values
        LowPrecision.SizeOf(paramType);
        if (count == 0) return;
        if (master == null || momentum == null || variance == null || grad == null)
            throw new ArgumentNullException(null, "master, momentum, variance and grad must all be given.");

        var pass = new Pass(master, momentum, variance, grad, gradType, param, paramType,
                            StepScalars.From(h), LowPrecision.Resolve(width));
        long tiles = (count + TileElements - 1) / TileElements;
        int workers = threads > 0 ? threads : Environment.ProcessorCount;
        if (tiles == 1 || workers == 1)
        {
            pass.Run(0, count);
            return;
        }
        Parallel.For(0L, tiles, new ParallelOptions { MaxDegreeOfParallelism = workers },
            t => pass.Run(t * TileElements, Math.Min(count, (t + 1) * TileElements)));
    }

    /// <summary>
    /// Safe form: all spans have the same length, except <paramref name="param"/>, which is either that long
    /// or empty (no low-precision copy). <typeparamref name="TGrad"/> / <typeparamref name="TParam"/> must be
    /// as wide as their element types (float for Float32, ushort or Half for the 16-bit ones).
    /// </summary>
    public static void Step<TGrad, TParam>(Span<float> master, Span<float> momentum, Span<float> variance,
                                           ReadOnlySpan<TGrad> grad, ElementType gradType,
                                           Span<TParam> param, ElementType paramType, in AdamHyperparameters h,
                                           SimdWidth width = SimdWidth.Auto, int threads = 0)
        where TGrad : unmanaged where TParam : unmanaged
    {
        int n = master.Length;
        if (momentum.Length != n || variance.Length != n || grad.Length != n || (param.Length != n && !param.IsEmpty))
            throw new ArgumentException(
                $"Lengths differ: master {n}, momentum {momentum.Length}, variance {variance.Length}, grad {grad.Length}, param {param.Length}.");
        RequireElementSize<TGrad>(gradType, nameof(grad));
        if (!param.IsEmpty) RequireElementSize<TParam>(paramType, nameof(param));
        fixed (float* m = master, mom = momentum, v = variance)
        fixed (TGrad* g = grad)
        fixed (TParam* p = param)
            Step(m, mom, v, g, gradType, param.IsEmpty ? null : p, paramType, n, h, width, threads);
    }

    /// <summary>Safe form for fp32 gradients and no low-precision copy.</summary>
    public static void Step(Span<float> master, Span<float> momentum, Span<float> variance, ReadOnlySpan<float> grad,
                            in AdamHyperparameters h, SimdWidth width = SimdWidth.Auto, int threads = 0)
        => Step(master, momentum, variance, grad, ElementType.Float32, Span<float>.Empty, ElementType.Float32, h, width, threads);

    private static void RequireElementSize<T>(ElementType type, string name) where T : unmanaged
    {
        if (sizeof(T) != LowPrecision.SizeOf(type))
            throw new ArgumentException($"{typeof(T).Name} cannot hold {type} elements.", name);
    }

    /// <summary>
    /// The per-step constants, computed once in double and rounded to fp32 the way torch rounds the
    /// Python-number arguments of its in-place tensor ops.
    /// </summary>
    private readonly struct StepScalars
    {
        public float InverseLossScale { get; init; }
        public bool L2 { get; init; }                 // Adam: g += WeightDecay * w
        public bool Decoupled { get; init; }          // AdamW: w *= DecayFactor
        public AdamScalars K { get; init; }

        public static StepScalars From(in AdamHyperparameters h)
        {
            bool decay = h.WeightDecay != 0;
            return new StepScalars
            {
                InverseLossScale = (float)h.InverseLossScale,
                L2 = decay && !h.DecoupledWeightDecay,
                Decoupled = decay && h.DecoupledWeightDecay,
                K = AdamScalars.From(h.LearningRate, h.Beta1, h.Beta2, h.Eps, h.WeightDecay, h.Step),
            };
        }
    }

    /// <summary>One call's operands; <see cref="Run"/> updates any range of them (a tile).</summary>
    private readonly struct Pass(float* master, float* momentum, float* variance, void* grad, ElementType gradType,
                                 void* param, ElementType paramType, StepScalars s, SimdWidth width)
    {
        // Called once per tile with a long loop inside: compile optimized at once instead of tiering up.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(long start, long end)
        {
            long i = width switch
            {
                SimdWidth.Vector512 => Run512(start, end),
                SimdWidth.Vector256 => Run256(start, end),
                _ => start,
            };
            for (; i < end; i++) // the scalar path, and the tail of the vector ones
            {
                float w = Update(i, LowPrecision.Load(grad, gradType, i));
                if (param != null) LowPrecision.Store(param, paramType, i, w);
            }
        }

        /// <summary>Whole blocks of two vectors (one 16-bit load widens to two fp32 vectors); returns where it stopped.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private long Run256(long i, long end)
        {
            const int lanes = 8; // Vector256<float>.Count
            for (; i + 2 * lanes <= end; i += 2 * lanes)
            {
                var (g0, g1) = LowPrecision.Load2x256(grad, gradType, i);
                var w0 = Update(i, g0);
                var w1 = Update(i + lanes, g1);
                if (param != null) LowPrecision.Store2x256(param, paramType, i, w0, w1);
            }
            return i;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private long Run512(long i, long end)
        {
            const int lanes = 16; // Vector512<float>.Count
            for (; i + 2 * lanes <= end; i += 2 * lanes)
            {
                var (g0, g1) = LowPrecision.Load2x512(grad, gradType, i);
                var w0 = Update(i, g0);
                var w1 = Update(i + lanes, g1);
                if (param != null) LowPrecision.Store2x512(param, paramType, i, w0, w1);
            }
            return i;
        }

        // The three forms of the update below are the same expression, operation for operation
        // (torch's order: addcmul is (value * t1) * t2, addcdiv is (value * t1) / t2).

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private float Update(long i, float g)
        {
            var k = s.K;
            g *= s.InverseLossScale;
            float w = master[i];
            if (s.L2) g += k.WeightDecay * w;
            if (s.Decoupled) w *= k.DecayFactor;
            float m = momentum[i] * k.Beta1 + g * k.OneMinusBeta1;
            float v = variance[i] * k.Beta2 + g * k.OneMinusBeta2 * g;
            float denom = MathF.Sqrt(v) * k.InverseBiasCorrection2Sqrt + k.Eps;
            w += m * k.NegativeStepSize / denom;
            momentum[i] = m;
            variance[i] = v;
            master[i] = w;
            return w;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector256<float> Update(long i, Vector256<float> g)
        {
            var k = s.K;
            g *= s.InverseLossScale;
            var w = Vector256.Load(master + i);
            if (s.L2) g += k.WeightDecay * w;
            if (s.Decoupled) w *= k.DecayFactor;
            var m = Vector256.Load(momentum + i) * k.Beta1 + g * k.OneMinusBeta1;
            var v = Vector256.Load(variance + i) * k.Beta2 + g * k.OneMinusBeta2 * g;
            var denom = Vector256.Sqrt(v) * k.InverseBiasCorrection2Sqrt + Vector256.Create(k.Eps);
            w += m * k.NegativeStepSize / denom;
            m.Store(momentum + i);
            v.Store(variance + i);
            w.Store(master + i);
            return w;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Vector512<float> Update(long i, Vector512<float> g)
        {
            g *= s.InverseLossScale;
            var w = Vector512.Load(master + i);
            var k = s.K;
            if (s.L2) g += k.WeightDecay * w;
            if (s.Decoupled) w *= k.DecayFactor;
            var m = Vector512.Load(momentum + i) * k.Beta1 + g * k.OneMinusBeta1;
            var v = Vector512.Load(variance + i) * k.Beta2 + g * k.OneMinusBeta2 * g;
            var denom = Vector512.Sqrt(v) * k.InverseBiasCorrection2Sqrt + Vector512.Create(k.Eps);
            w += m * k.NegativeStepSize / denom;
            m.Store(momentum + i);
            v.Store(variance + i);
            w.Store(master + i);
            return w;
        }
    }
}
