using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Optimizer;

/// <summary>The one-pass sum of squares against the tensor route (fp64 upcast, vector_norm squared), and the global norm through it.</summary>
public class SquaredNormKernelTests
{
    public SquaredNormKernelTests() => TorchRuntime.EnsureLoaded();

    public static TheoryData<ScalarType, SimdWidth, long> Cases()
    {
        var data = new TheoryData<ScalarType, SimdWidth, long>();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
        foreach (var width in new[] { SimdWidth.Scalar, SimdWidth.Vector256, SimdWidth.Vector512 })
        foreach (long n in new long[] { 1, 31, 1025 })
            data.Add(dtype, width, n);
        // Several tiles in parallel, with a tail, at the machine's own width.
        data.Add(ScalarType.BFloat16, SimdWidth.Auto, 3 * CpuAdamKernel.TileElements + 77);
        data.Add(ScalarType.Float32, SimdWidth.Auto, 3 * CpuAdamKernel.TileElements + 77);
        return data;
    }

    /// <summary>Within 1e-6 relative of the sum of squares computed in fp64 from the same stored values.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public unsafe void EqualsTheFloat64SumOfSquares(ScalarType dtype, SimdWidth width, long n)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var values = (randn(n) * 0.01).to(dtype);
        double expected = values.to(ScalarType.Float64).square().sum().item<double>();
        double actual = SquaredNormKernel.SumOfSquares(TensorMemory.Address(values), KernelAdam.ElementOf(dtype), n, width);
        Assert.True(Math.Abs(actual - expected) <= 1e-6 * expected, $"{actual} vs {expected}");
    }

    /// <summary>GlobalNorm over host tensors (kernel) and the same tensors' norm by tensor ops agree to 1e-6.</summary>
    [Fact]
    public void GlobalNormOverMixedTensorsEqualsTheTensorRoute()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var grads = new[] { randn(300, 7).to(ScalarType.BFloat16), randn(5000), randn(33).to(ScalarType.Float16), randn(8, 8).t() /* not contiguous */ };
        double expected = Math.Sqrt(grads.Sum(g => g.to(ScalarType.Float64).square().sum().item<double>()));
        double actual = GradientClipping.GlobalNorm(grads);
        Assert.True(Math.Abs(actual - expected) <= 1e-6 * expected, $"{actual} vs {expected}");
    }
}
