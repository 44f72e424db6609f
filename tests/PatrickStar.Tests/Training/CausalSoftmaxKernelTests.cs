using System.Runtime.Intrinsics;
using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>The causal softmax kernel, at each vector width, against masked softmax and its autograd in fp64.</summary>
public class CausalSoftmaxKernelTests
{
    private readonly ITestOutputHelper output;

    public CausalSoftmaxKernelTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private const double Scale = 0.125;

    private bool Runs(SimdWidth width) => SimdWidthSupport.Runs(width, output);

    /// <summary>softmax(scale · x + causal mask) and d/dx under the upstream gradient <paramref name="g"/>, by autograd in fp64.</summary>
    private static (Tensor Probs, Tensor Gradient) Reference(Tensor scores, Tensor g)
    {
        long t = scores.shape[1];
        var x = scores.to(ScalarType.Float64).requires_grad_();
        using var above = ones(t, t, dtype: ScalarType.Bool).triu(1);
        var p = (x * Scale).masked_fill(above, double.NegativeInfinity).softmax(-1);
        p.backward(new[] { g.to(ScalarType.Float64) });
        return (p.detach(), x.grad!);
    }

    private static unsafe (Tensor Probs, Tensor Gradient) Kernel(Tensor scores, Tensor g, SimdWidth width, int threads)
    {
        var p = empty_like(scores);
        var d = empty_like(scores);
        var type = KernelAdam.ElementOf(scores.dtype);
        int t = (int)scores.shape[1];
        CausalSoftmaxKernel.Forward(TensorMemory.Address(scores), TensorMemory.Address(p), type, scores.shape[0], t, (float)Scale, threads, width);
        CausalSoftmaxKernel.Backward(TensorMemory.Address(p), TensorMemory.Address(g), TensorMemory.Address(d), type, scores.shape[0], t, (float)Scale, threads, width);
        return (p, d);
    }

    private static (Tensor Scores, Tensor Upstream) Inputs(ScalarType dtype, long t)
    {
        manual_seed(t);
        // Scores up to about ±40 (±5 after the scale): rows from nearly flat to nearly one-hot.
        return ((randn(3, t, t) * 12).to(dtype), randn(3, t, t).to(dtype));
    }

    /// <summary>
    /// Probabilities within the dtype's rounding of the fp64 ones (absolute: they lie in [0, 1]), gradients within a few of its
    /// roundings of the largest, and exact zeros above every diagonal. T = 1, 45 and 100 leave rows that whole vector steps do
    /// not cover (scalar tails); 64 is covered whole.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 2e-6, 2e-5)]
    [InlineData(ScalarType.BFloat16, 4e-3, 8e-3)]
    [InlineData(ScalarType.Float16, 5e-4, 1e-3)]
    public void EqualsMaskedSoftmaxAndItsGradientAtEveryWidth(ScalarType dtype, double probsTolerance, double gradientTolerance)
    {
        foreach (var width in new[] { SimdWidth.Scalar, SimdWidth.Vector256, SimdWidth.Vector512, SimdWidth.Auto })
        {
            if (!Runs(width)) continue;
            foreach (long t in new long[] { 1, 45, 64, 100 })
            {
                using var scope = NewDisposeScope();
                var (scores, upstream) = Inputs(dtype, t);
                var (p, d) = Kernel(scores, upstream, width, threads: 2);
                var (pRef, dRef) = Reference(scores, upstream);
                double pError = (p.to(ScalarType.Float64) - pRef).abs().max().item<double>();
                double dError = (d.to(ScalarType.Float64) - dRef).abs().max().item<double>() / Math.Max(dRef.abs().max().item<double>(), 1e-9); // T = 1: all zero
                using var above = ones(t, t, dtype: ScalarType.Bool).triu(1).expand(3, t, t);
                bool zerosAbove = p.masked_select(above).eq(0).all().item<bool>() && d.masked_select(above).eq(0).all().item<bool>();
                output.WriteLine($"{dtype} {width} T={t}: probabilities max |diff| {pError:g3}, gradient {dError:g3} of its largest");
                Assert.True(pError <= probsTolerance, $"{dtype} {width} T={t}: probabilities differ by {pError:g3}");
                Assert.True(dError <= gradientTolerance, $"{dtype} {width} T={t}: gradient differs by {dError:g3} of its largest");
                Assert.True(zerosAbove, $"{dtype} {width} T={t}: nonzero above the diagonal");
            }
        }
    }

    /// <summary>Each row is computed alone, whichever worker takes it: one worker and three give the same bits.</summary>
    [Fact]
    public void SameBitsForAnyThreadCount()
    {
        using var scope = NewDisposeScope();
        var (scores, upstream) = Inputs(ScalarType.BFloat16, 100);
        var (p1, d1) = Kernel(scores, upstream, SimdWidth.Auto, threads: 1);
        var (p3, d3) = Kernel(scores, upstream, SimdWidth.Auto, threads: 3);
        Assert.True(p1.equal(p3).all().item<bool>(), "probabilities differ");
        Assert.True(d1.equal(d3).all().item<bool>(), "gradients differ");
    }
}

/// <summary>The 16-bit probabilities' exp against MathF.Exp over the inputs it sees (x &lt;= 0).</summary>
public class ShortExpTests
{
    /// <summary>
    /// Within 4e-6 relative of MathF.Exp from 0 to −80, 1 at 0, e^−80 (a normal number) below −80, at both widths; NaN kept.
    /// </summary>
    [Fact]
    public void WithinFourMillionthsOfMathFExpAndNeverSubnormal()
    {
        var inputs = new List<float>();
        for (float x = 0; x > -100f; x -= 0.0013f) inputs.Add(x);
        inputs.AddRange(new[] { -80f, -80.0001f, -87.4f, -1e-30f, -0f, float.NegativeInfinity, -1e30f });
        while (inputs.Count % 16 != 0) inputs.Add(-1f);
        var x16 = inputs.ToArray();
        var got512 = new float[x16.Length];
        var got256 = new float[x16.Length];
        for (int i = 0; i < x16.Length; i += 16)
        {
            ShortExp.Exp(Vector512.Create(x16, i)).CopyTo(got512.AsSpan(i));
            ShortExp.Exp(Vector256.Create(x16, i)).CopyTo(got256.AsSpan(i));
            ShortExp.Exp(Vector256.Create(x16, i + 8)).CopyTo(got256.AsSpan(i + 8));
        }
        float floor = MathF.Exp(-80f);
        for (int i = 0; i < x16.Length; i++)
        {
            float expected = MathF.Exp(Math.Max(x16[i], -80f));
            foreach (var got in new[] { got512[i], got256[i] })
                Assert.True(Math.Abs(got - expected) <= 4e-6 * expected, $"exp({x16[i]:R}) = {got:R}, MathF (floored at -80) {expected:R}");
        }
        Assert.Equal(1f, ShortExp.Exp(Vector512<float>.Zero).GetElement(0));
        Assert.True(ShortExp.Exp(Vector512.Create(float.NegativeInfinity)).GetElement(0) >= floor * (1 - 4e-6f));
        Assert.True(float.IsNaN(ShortExp.Exp(Vector512.Create(float.NaN)).GetElement(0)));
    }
}
