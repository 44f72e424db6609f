using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Optimizer;

public class CpuAdamKernelTests
{
    // Every width can be forced: an unaccelerated one runs in .NET's software emulation (correct, slow),
    // so the forced runs use short lengths only.
    private static readonly SimdWidth[] Widths = [SimdWidth.Scalar, SimdWidth.Vector256, SimdWidth.Vector512];
    private static readonly int[] ShortLengths = [0, 1, 15, 16, 17, 1023];
    private const double Lr = 1e-2, Beta1 = 0.9, Beta2 = 0.95, Eps = 1e-8, WeightDecay = 0.1;

    // Against float64 a larger eps: with eps = 1e-8 an element whose gradient cancels against the L2 term
    // to about eps moves by up to lr per fp32 ulp of the gradient (torch's fp32 result is just as far from
    // float64 there), so the comparison would measure conditioning, not the kernel. Elsewhere eps is 1e-8.
    private const double ReferenceEps = 1e-3;

    // ---- Against a float64 reference ----

    public static TheoryData<ElementType, ElementType?, double, bool> ReferenceCases()
    {
        var data = new TheoryData<ElementType, ElementType?, double, bool>();
        foreach (var grad in Enum.GetValues<ElementType>())
        foreach (var param in new ElementType?[] { null, ElementType.Float32, ElementType.BFloat16, ElementType.Float16 })
        foreach (double scale in new[] { 1.0, 1024.0 })
        foreach (bool decoupled in new[] { false, true })
            data.Add(grad, param, scale, decoupled);
        return data;
    }

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void ShortLengthsMatchFloat64AtEveryWidth(ElementType gradType, ElementType? paramType, double lossScale, bool decoupled)
    {
        foreach (int n in ShortLengths)
        foreach (var width in Widths)
            StepAgainstReference(n, gradType, paramType, lossScale, decoupled, width, seed: n * 7 + (int)width);
    }

    [Theory]
    [InlineData(ElementType.Float32, false)]
    [InlineData(ElementType.Float32, true)]
    [InlineData(ElementType.BFloat16, false)]
    [InlineData(ElementType.BFloat16, true)]
    [InlineData(ElementType.Float16, false)]
    [InlineData(ElementType.Float16, true)]
    public void LongLengthMatchesFloat64AtTheBestWidth(ElementType gradType, bool decoupled)
    {
        // Many tiles on every core. One loss scale only (the short lengths cover both; this test's time
        // goes to the Debug-built kernel), and a param copy in the gradient's precision, as mixed precision keeps them.
        StepAgainstReference((1 << 20) + 3, gradType, gradType, 1024.0, decoupled, SimdWidth.Auto, seed: 5);
    }

    /// <summary>Three steps from zero state; after each, master/m/v against float64 and param against the master.</summary>
    private static void StepAgainstReference(int n, ElementType gradType, ElementType? paramType, double lossScale,
                                             bool decoupled, SimdWidth width, int seed)
    {
        var rng = new Random(seed);
        var state = new State(RandomFloats(rng, n, 1.0));
        var reference = new ReferenceAdam(state.Master);
        byte[]? param = paramType is { } pt ? new byte[n * LowPrecision.SizeOf(pt)] : null;
        string where = $"n={n} width={width} grad={gradType} param={paramType} scale={lossScale} adamw={decoupled}";
        for (int step = 1; step <= 3; step++)
        {
            // The stored (scaled) gradient is what both sides read.
            byte[] grad = Encode(RandomFloats(rng, n, lossScale), gradType);
            var h = new AdamHyperparameters(Lr, Beta1, Beta2, ReferenceEps, WeightDecay, decoupled, step, 1.0 / lossScale);
            Run(state, grad, gradType, param, paramType ?? ElementType.Float32, h, width);
            reference.Step(Decode(grad, gradType, n), h);

            AssertClose(reference.Master, state.Master, $"master, step {step}, {where}");
            AssertClose(reference.Momentum, state.Momentum, $"momentum, step {step}, {where}");
            AssertClose(reference.Variance, state.Variance, $"variance, step {step}, {where}");
            if (param is not null) AssertParamIsNarrowedMaster(state.Master, param, paramType!.Value, where);
        }
    }

    private static void AssertClose(double[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            double tolerance = 1e-5 * Math.Abs(expected[i]) + 1e-6; // fp32 arithmetic, a few roundings deep
            if (!(Math.Abs(actual[i] - expected[i]) <= tolerance))
                Assert.Fail($"{what}: [{i}] {actual[i]:R} vs float64 {expected[i]:R}");
        }
    }

    private static void AssertParamIsNarrowedMaster(float[] master, byte[] param, ElementType type, string where)
    {
        for (int i = 0; i < master.Length; i++)
        {
            uint expected = type == ElementType.Float32 ? BitConverter.SingleToUInt32Bits(master[i]) : ReferenceNarrow(master[i], type);
            uint actual = type == ElementType.Float32 ? BitConverter.SingleToUInt32Bits(As<float>(param)[i]) : As<ushort>(param)[i];
            if (expected != actual) Assert.Fail($"param[{i}] {actual:X} is not master {master[i]:R} as {type} ({expected:X}); {where}");
        }
    }

    /// <summary>Adam / AdamW in float64, written from the formula (torch.optim.AdamW's).</summary>
    private sealed class ReferenceAdam(float[] initialMaster)
    {
        public double[] Master { get; } = initialMaster.Select(x => (double)x).ToArray();
        public double[] Momentum { get; } = new double[initialMaster.Length];
        public double[] Variance { get; } = new double[initialMaster.Length];

        public void Step(double[] storedGrad, AdamHyperparameters h)
        {
            double bc1 = 1 - Math.Pow(h.Beta1, h.Step), bc2 = 1 - Math.Pow(h.Beta2, h.Step);
            for (int i = 0; i < Master.Length; i++)
            {
                double g = storedGrad[i] * h.InverseLossScale;
                if (h.DecoupledWeightDecay) Master[i] *= 1 - h.LearningRate * h.WeightDecay;
                else g += h.WeightDecay * Master[i];
                Momentum[i] = h.Beta1 * Momentum[i] + (1 - h.Beta1) * g;
                Variance[i] = h.Beta2 * Variance[i] + (1 - h.Beta2) * g * g;
                Master[i] -= h.LearningRate / bc1 * Momentum[i] / (Math.Sqrt(Variance[i]) / Math.Sqrt(bc2) + h.Eps);
            }
        }
    }

    // ---- Every width, every thread count: the same bits ----

    [Theory]
    [InlineData(ElementType.Float32, ElementType.Float32)]
    [InlineData(ElementType.BFloat16, ElementType.BFloat16)]
    [InlineData(ElementType.Float16, ElementType.Float16)]
    [InlineData(ElementType.Float32, ElementType.BFloat16)]
    [InlineData(ElementType.Float16, ElementType.BFloat16)]
    public void EveryWidthGivesTheScalarBits(ElementType gradType, ElementType paramType)
    {
        foreach (bool decoupled in new[] { false, true })
        {
            var results = Widths.Select(w => RunSteps(1023, gradType, paramType, 1024.0, decoupled, w, threads: 1)).ToArray();
            for (int k = 1; k < results.Length; k++)
                AssertSameBits(results[0], results[k], $"{Widths[k]} vs Scalar, grad={gradType} param={paramType} adamw={decoupled}");
        }
    }

    [Fact]
    public void OneThreadAndTwoThreadsGiveTheSameBits()
    {
        int n = 5 * CpuAdamKernel.TileElements + 7; // several tiles and a ragged end
        var one = RunSteps(n, ElementType.BFloat16, ElementType.BFloat16, 1024.0, decoupled: true, SimdWidth.Auto, threads: 1);
        var two = RunSteps(n, ElementType.BFloat16, ElementType.BFloat16, 1024.0, decoupled: true, SimdWidth.Auto, threads: 2);
        AssertSameBits(one, two, "threads 1 vs 2");
    }

    private static (State State, byte[] Param) RunSteps(int n, ElementType gradType, ElementType paramType, double lossScale,
                                                        bool decoupled, SimdWidth width, int threads)
    {
        var rng = new Random(11);
        var state = new State(RandomFloats(rng, n, 1.0));
        var param = new byte[n * LowPrecision.SizeOf(paramType)];
        for (int step = 1; step <= 3; step++)
        {
            byte[] grad = Encode(RandomFloats(rng, n, lossScale), gradType);
            var h = new AdamHyperparameters(Lr, Beta1, Beta2, Eps, WeightDecay, decoupled, step, 1.0 / lossScale);
            Run(state, grad, gradType, param, paramType, h, width, threads);
        }
        return (state, param);
    }

    private static void AssertSameBits((State State, byte[] Param) a, (State State, byte[] Param) b, string what)
    {
        Assert.True(Bits(a.State.Master).SequenceEqual(Bits(b.State.Master)), $"master differs: {what}");
        Assert.True(Bits(a.State.Momentum).SequenceEqual(Bits(b.State.Momentum)), $"momentum differs: {what}");
        Assert.True(Bits(a.State.Variance).SequenceEqual(Bits(b.State.Variance)), $"variance differs: {what}");
        Assert.True(a.Param.AsSpan().SequenceEqual(b.Param), $"param differs: {what}");
    }

    private static uint[] Bits(float[] values) => values.Select(BitConverter.SingleToUInt32Bits).ToArray();

    // ---- Against TorchSharp's optimizers ----

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void MatchesTorchAdamAndAdamW(bool decoupled)
    {
        TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        manual_seed(3);
        const int n = 4099; // vector blocks and a scalar tail
        var theirs = new TorchSharp.Modules.Parameter(randn(n));
        var state = new State(theirs.data<float>().ToArray());
        torch.optim.Optimizer optimizer = decoupled
            ? torch.optim.AdamW([theirs], lr: Lr, beta1: Beta1, beta2: Beta2, eps: Eps, weight_decay: WeightDecay)
            : torch.optim.Adam([theirs], lr: Lr, beta1: Beta1, beta2: Beta2, eps: Eps, weight_decay: WeightDecay);
        for (int step = 1; step <= 5; step++)
        {
            var grad = randn(n);
            theirs.grad = grad.clone();
            optimizer.step();
            var h = new AdamHyperparameters(Lr, Beta1, Beta2, Eps, WeightDecay, decoupled, step);
            CpuAdamKernel.Step(state.Master, state.Momentum, state.Variance, grad.data<float>().ToArray(), h);
        }
        float[] expected = theirs.data<float>().ToArray();
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(state.Master[i] - expected[i]) <= 1e-5, $"[{i}] {state.Master[i]:R} vs torch {expected[i]:R}");
    }

    [Theory]
    [InlineData(true, 1.0)]
    [InlineData(false, 1.0)]
    [InlineData(true, 1.0 / 4096)]
    public void TheTensorPathAgreesWithTheKernel(bool decoupled, double multiplier)
    {
        // Hybrid Adam updates chunks on a GPU with tensor ops and the others with the kernel: they must agree to
        // float rounding (not to the bit: libtorch's fp32 sqrt is not correctly rounded).
        TorchRuntime.EnsureLoaded();
        using var scope = NewDisposeScope();
        manual_seed(11);
        foreach (int n in new[] { 1, 17, 1023, 70_001 })
        {
            var master = randn(n);
            var state = new State(master.data<float>().ToArray());
            var (w, m, v) = (master.clone(), zeros(n), zeros(n));
            var settings = new PatrickStar.Optimizer.AdamSettings(decoupled ? PatrickStar.Config.OptimizerType.AdamW : PatrickStar.Config.OptimizerType.Adam,
                Beta1, Beta2, Eps, WeightDecay);
            for (int step = 1; step <= 4; step++)
            {
                var grad = randn(n).mul(1 / multiplier);
                AdamMath.Update(w, grad.mul(multiplier), m, v, Lr, settings, step, decay: true);
                var h = new AdamHyperparameters(Lr, Beta1, Beta2, Eps, WeightDecay, decoupled, step, InverseLossScale: multiplier);
                CpuAdamKernel.Step(state.Master, state.Momentum, state.Variance, grad.data<float>().ToArray(), h);
            }
            foreach (var (ours, theirs) in new[] { (state.Master, w), (state.Momentum, m), (state.Variance, v) })
            {
                float[] t = theirs.data<float>().ToArray();
                for (int i = 0; i < n; i++)
                    Assert.True(Math.Abs(ours[i] - t[i]) <= 1e-6 * Math.Max(1, Math.Abs(t[i])), $"n={n} [{i}]: kernel {ours[i]:R} vs tensor ops {t[i]:R}");
            }
        }
    }

    // ---- Narrowing and widening ----

    /// <summary>Ties, near-ties, overflow, subnormals, infinities and NaNs (with payloads) of both 16-bit formats.</summary>
    private static float[] SpecialValues()
    {
        uint[] bits =
        [
            0x0000_0000, 0x8000_0000, 0x7F80_0000, 0xFF80_0000,                 // zeros, infinities
            0x7FC0_0000, 0xFFC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FA0_0000,    // NaNs: quiet, signaling, payloads
            0x7FC1_2345, 0x7F80_2000, 0x7FFF_FFFF, 0xFFFF_FFFF,
            0x3F80_8000, 0x3F81_8000, 0x3F80_7FFF, 0x3F80_8001, 0xBF81_8000,    // bf16 ties (to even) and near-ties
            0x7F7F_FFFF, 0x7F7F_8000, 0x7F7F_7FFF, 0x7F7E_8000, 0xFF7F_FFFF,    // bf16 overflow to infinity, or not
            0x0000_0001, 0x0000_8000, 0x0001_8000, 0x007F_FFFF, 0x8000_8000,    // fp32 subnormals
            0x3F80_1000, 0x3F80_3000, 0x3F80_0FFF, 0x3F80_1001,                 // fp16 ties and near-ties
        ];
        float[] halfEdges =
        [
            65504f, 65519.996f, 65520f, 65520.004f, 65536f, -65520f, 1e10f,     // fp16 max, overflow tie, beyond
            5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f, 1e-9f, // fp16 smallest subnormal, ties around it
            6.097555e-5f, 6.1035156e-5f, 6.1005353e-5f, -3.0517578e-5f, 1.52587890625e-5f * 3,
        ];
        return bits.Select(BitConverter.UInt32BitsToSingle).Concat(halfEdges).ToArray();
    }

    private static float[] NarrowingInputs()
    {
        // Specials, then random bit patterns (every class of fp32), then values in and around fp16's range.
        var rng = new Random(42);
        var randomBits = Enumerable.Range(0, 1 << 16).Select(_ => BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)));
        var halfRange = Enumerable.Range(0, 1 << 16).Select(_ => (float)(rng.NextDouble() * 2 - 1) * MathF.Pow(2, rng.Next(-26, 18)));
        return SpecialValues().Concat(randomBits).Concat(halfRange).ToArray();
    }

    [Theory]
    [InlineData(ElementType.BFloat16)]
    [InlineData(ElementType.Float16)]
    public void NarrowingRoundsToNearestEvenOnEveryPath(ElementType type)
    {
        float[] input = NarrowingInputs();
        foreach (float x in input)
        {
            ushort scalar = type == ElementType.BFloat16 ? LowPrecision.SingleToBFloat16(x) : LowPrecision.SingleToHalf(x);
            Assert.True(ReferenceNarrow(x, type) == scalar, $"scalar {type} of {BitConverter.SingleToUInt32Bits(x):X8}: {scalar:X4}");
        }
        foreach (var width in Widths)
        {
            var output = new ushort[input.Length];
            LowPrecision.Narrow(input, output, type, width);
            for (int i = 0; i < input.Length; i++)
                if (output[i] != ReferenceNarrow(input[i], type))
                    Assert.Fail($"{width} {type} of {BitConverter.SingleToUInt32Bits(input[i]):X8}: {output[i]:X4}, expected {ReferenceNarrow(input[i], type):X4}");
        }
    }

    [Theory]
    [InlineData(ElementType.BFloat16)]
    [InlineData(ElementType.Float16)]
    public void WideningIsExactForEveryValue(ElementType type)
    {
        ushort[] all = Enumerable.Range(0, 1 << 16).Select(i => (ushort)i).ToArray();
        foreach (var width in Widths)
        {
            var output = new float[all.Length];
            LowPrecision.Widen(all, type, output, width);
            for (int i = 0; i < all.Length; i++)
            {
                uint expected = BitConverter.SingleToUInt32Bits(ReferenceWiden(all[i], type));
                if (BitConverter.SingleToUInt32Bits(output[i]) != expected)
                    Assert.Fail($"{width} {type} {i:X4}: {BitConverter.SingleToUInt32Bits(output[i]):X8}, expected {expected:X8}");
            }
        }
    }

    [Theory]
    [InlineData(ElementType.BFloat16)]
    [InlineData(ElementType.Float16)]
    public void KernelWritesTheMasterNarrowedOnEveryPath(ElementType paramType)
    {
        // lr = 0 and zero gradients leave the master as it is (bar NaN quieting); the copy must be its rounding.
        float[] specials = SpecialValues();
        int n = 3 * 32 + 5; // whole blocks of every width, then a tail, all of special values
        var master = Enumerable.Range(0, n).Select(i => specials[i % specials.Length]).ToArray();
        foreach (var width in Widths)
        {
            var state = new State((float[])master.Clone());
            var param = new byte[n * 2];
            var h = new AdamHyperparameters(0, Beta1, Beta2, Eps, 0, DecoupledWeightDecay: true, Step: 1);
            Run(state, new byte[n * 4], ElementType.Float32, param, paramType, h, width);
            AssertParamIsNarrowedMaster(state.Master, param, paramType, $"width={width}");
            for (int i = 0; i < n; i++)
                Assert.True(float.IsNaN(master[i]) ? float.IsNaN(state.Master[i]) : master[i].Equals(state.Master[i]), $"master[{i}] moved");
        }
    }

    /// <summary>Round to nearest, ties to even, decided by comparing distances in float64 (not by bit tricks).</summary>
    private static ushort ReferenceNarrow(float x, ElementType type)
    {
        if (type == ElementType.Float16) return BitConverter.HalfToUInt16Bits((Half)x);
        uint bits = BitConverter.SingleToUInt32Bits(x);
        if (float.IsNaN(x)) return (ushort)((bits >> 16) | 0x40); // same sign, top of the payload, quiet
        if (float.IsInfinity(x)) return (ushort)(bits >> 16);
        uint down = bits & 0xFFFF_0000, up = down + 0x1_0000;
        double below = BitConverter.UInt32BitsToSingle(down);
        double above = ((up >> 23) & 0xFF) == 0xFF
            ? Math.CopySign(Math.Pow(2, 128), x) // past the largest finite bf16: where infinity "sits" for rounding
            : BitConverter.UInt32BitsToSingle(up);
        double toBelow = Math.Abs(x - below), toAbove = Math.Abs(above - x);
        bool roundUp = toAbove < toBelow || (toAbove == toBelow && ((down >> 16) & 1) == 1);
        return (ushort)((roundUp ? up : down) >> 16);
    }

    private static float ReferenceWiden(ushort bits, ElementType type) => type == ElementType.BFloat16
        ? BitConverter.UInt32BitsToSingle((uint)bits << 16)
        : (float)BitConverter.UInt16BitsToHalf(bits);

    // ---- API ----

    [Fact]
    public void BestIsTheWidestAcceleratedWidth()
    {
        var expected = Vector512.IsHardwareAccelerated ? SimdWidth.Vector512
            : Vector256.IsHardwareAccelerated ? SimdWidth.Vector256 : SimdWidth.Scalar;
        Assert.Equal(expected, CpuAdamKernel.Best);
    }

    [Fact]
    public void RejectsStepZeroMismatchedLengthsAndWrongElementSizes()
    {
        var a = new float[4];
        var ok = new AdamHyperparameters(Lr, Beta1, Beta2, Eps, 0, true, Step: 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuAdamKernel.Step(a, new float[4], new float[4], new float[4], ok with { Step = 0 }));
        Assert.Throws<ArgumentException>(() => CpuAdamKernel.Step(a, new float[4], new float[3], new float[4], ok));
        Assert.Throws<ArgumentException>(() => CpuAdamKernel.Step<float, float>(a, new float[4], new float[4], new float[4],
            ElementType.BFloat16, Span<float>.Empty, ElementType.Float32, ok));
        Assert.Throws<ArgumentException>(() => CpuAdamKernel.Step<Half, Half>(a, new float[4], new float[4], new Half[4],
            ElementType.Float16, new Half[2], ElementType.Float16, ok));
    }

    [Fact]
    public void SpanFormTakesHalfArraysDirectly()
    {
        var master = new[] { 1f, -2f, 3f };
        var grad = new[] { (Half)0.5f, (Half)(-0.25f), (Half)1f };
        var param = new Half[3];
        var h = new AdamHyperparameters(Lr, Beta1, Beta2, Eps, 0, true, Step: 1);
        CpuAdamKernel.Step<Half, Half>(master, new float[3], new float[3], grad, ElementType.Float16, param, ElementType.Float16, h);
        // Step 1 moves every weight by about lr against its gradient's sign.
        Assert.Equal(1f - (float)Lr, master[0], 5);
        Assert.Equal(-2f + (float)Lr, master[1], 5);
        Assert.Equal((Half)master[2], param[2]);
    }

    // ---- Helpers ----

    private sealed class State(float[] master)
    {
        public float[] Master { get; } = master;
        public float[] Momentum { get; } = new float[master.Length];
        public float[] Variance { get; } = new float[master.Length];
    }

    private static unsafe void Run(State s, byte[] grad, ElementType gradType, byte[]? param, ElementType paramType,
                                   in AdamHyperparameters h, SimdWidth width, int threads = 0)
    {
        fixed (float* m = s.Master, mom = s.Momentum, v = s.Variance)
        fixed (byte* g = grad, p = param)
            CpuAdamKernel.Step(m, mom, v, g, gradType, param is null ? null : p, paramType, s.Master.Length, h, width, threads);
    }

    private static float[] RandomFloats(Random rng, int n, double scale)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return values;
    }

    /// <summary>Values stored in <paramref name="type"/> (rounded by the reference rule), as raw bytes.</summary>
    private static byte[] Encode(float[] values, ElementType type)
    {
        if (type == ElementType.Float32) return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var bits = values.Select(x => ReferenceNarrow(x, type)).ToArray();
        return MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
    }

    private static double[] Decode(byte[] buffer, ElementType type, int n)
    {
        var values = new double[n];
        if (type == ElementType.Float32)
            for (int i = 0; i < n; i++) values[i] = As<float>(buffer)[i];
        else
            for (int i = 0; i < n; i++) values[i] = ReferenceWiden(As<ushort>(buffer)[i], type);
        return values;
    }

    private static ReadOnlySpan<T> As<T>(byte[] buffer) where T : struct => MemoryMarshal.Cast<byte, T>(buffer);
}
