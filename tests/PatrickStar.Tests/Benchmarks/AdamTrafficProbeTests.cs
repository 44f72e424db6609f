using PatrickStar.Benchmarks;
using PatrickStar.Optimizer;
using Xunit;

namespace PatrickStar.Tests.Benchmarks;

public class AdamTrafficProbeTests
{
    public static TheoryData<SimdWidth, ElementType, ElementType?, int> Cases()
    {
        var data = new TheoryData<SimdWidth, ElementType, ElementType?, int>();
        var types = new (ElementType, ElementType?)[] { (ElementType.Float32, null), (ElementType.BFloat16, ElementType.BFloat16), (ElementType.Float32, ElementType.Float32) };
        foreach (var width in new[] { SimdWidth.Scalar, SimdWidth.Vector256, SimdWidth.Vector512 })
            foreach (var (grad, param) in types)
                foreach (int n in new[] { 1, 31, 32, 33, 1023 })
                    data.Add(width, grad, param, n);
        // Several tiles, so the threaded split is covered too (at the native width only: emulated widths are slow).
        foreach (var (grad, param) in types) data.Add(SimdWidth.Auto, grad, param, 2 * CpuAdamKernel.TileElements + 17);
        return data;
    }

    // Every element of master, momentum and variance gets its own gradient added in place; the parameter copy is the
    // new master (bf16: truncated); nothing else changes.
    [Theory]
    [MemberData(nameof(Cases))]
    public unsafe void RunUpdatesEveryElementInPlaceLikeTheScalarReference(SimdWidth width, ElementType gradType, ElementType? paramType, int n)
    {
        var random = new Random(n);
        float[] master = Values(random, n), momentum = Values(random, n), variance = Values(random, n), gradFloat = Values(random, n);
        var gradBf16 = gradFloat.Select(g => (ushort)(BitConverter.SingleToUInt32Bits(g) >> 16)).ToArray();
        float[] g = gradType == ElementType.BFloat16 ? gradBf16.Select(LowPrecision.BFloat16ToSingle).ToArray() : gradFloat;
        float[] wantMaster = master.Zip(g, (a, b) => a + b).ToArray();
        float[] wantMomentum = momentum.Zip(g, (a, b) => a + b).ToArray();
        float[] wantVariance = variance.Zip(g, (a, b) => a + b).ToArray();
        var paramFloat = new float[n + 1]; // one past the end, which must stay untouched
        var paramBf16 = new ushort[n + 1];
        paramFloat[n] = 7f;
        paramBf16[n] = 7;

        fixed (float* w = master, m = momentum, v = variance, gf = gradFloat, pf = paramFloat)
        fixed (ushort* gb = gradBf16, pb = paramBf16)
        {
            void* grad = gradType == ElementType.BFloat16 ? gb : gf;
            void* param = paramType switch { null => null, ElementType.BFloat16 => pb, _ => pf };
            AdamTrafficProbe.Run(w, m, v, grad, gradType, param, paramType ?? gradType, n, width);
        }

        Assert.Equal(wantMaster, master);
        Assert.Equal(wantMomentum, momentum);
        Assert.Equal(wantVariance, variance);
        if (paramType == ElementType.BFloat16)
            Assert.Equal(wantMaster.Select(x => (ushort)(BitConverter.SingleToUInt32Bits(x) >> 16)).Append((ushort)7), paramBf16);
        else
            Assert.Equal(paramType is null ? new float[n].Append(7f) : wantMaster.Append(7f), paramFloat);
    }

    [Theory]
    [InlineData(ElementType.Float32, null)]
    [InlineData(ElementType.BFloat16, ElementType.BFloat16)]
    public void BoundOfATinyArrayIsPositiveAndFinite(ElementType gradType, ElementType? paramType)
    {
        var bound = AdamTrafficProbe.Measure(1000, gradType, paramType, warmup: 1, reps: 3);
        Assert.Equal(3, bound.Seconds.Count);
        Assert.Equal(28, bound.BytesPerElement);
        foreach (double rate in new[] { bound.BestElementsPerSecond, bound.MedianElementsPerSecond })
            Assert.True(double.IsFinite(rate) && rate > 0, $"{rate}");
        Assert.True(bound.BestElementsPerSecond >= bound.MedianElementsPerSecond);
    }

    [Fact]
    public void Float16IsRefusedWithAMessage()
    {
        var e = Assert.Throws<ArgumentException>(() => AdamTrafficProbe.Measure(16, ElementType.Float16, null));
        Assert.Contains("Float16", e.Message);
    }

    private static float[] Values(Random random, int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
}
