using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>The LM head's d/dW made in row slices against one whole product.</summary>
public class RowSlicedProductTests
{
    public RowSlicedProductTests() => TorchRuntime.EnsureLoaded();

    // Two whole slices and a short last one, so that a slice boundary off by one shows.
    private const long Rows = 2 * RowSlicedProduct.SliceRows + 5, K = 12, N = 8;

    /// <summary>beta 0 writes over the result (a NaN there must not be read); beta 1 adds to it.</summary>
    [Theory]
    [InlineData(ScalarType.Float32, 0f)]
    [InlineData(ScalarType.BFloat16, 0f)]
    [InlineData(ScalarType.Float32, 1f)]
    [InlineData(ScalarType.BFloat16, 1f)]
    public void EqualsOneWholeProduct(ScalarType dtype, float beta)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        var a = randn(K, Rows, dtype: dtype);
        var b = randn(K, N, dtype: dtype);
        var start = beta == 0 ? full(Rows, N, double.NaN, dtype: dtype) : randn(Rows, N, dtype: dtype);
        var sliced = start.clone();
        RowSlicedProduct.AddTransposedA(sliced, a, b, beta);
        var whole = start.clone().addmm_(a.t(), b, beta: beta);
        // Each element is the same k-term sum, but another kernel may add its terms in another order: equal to rounding.
        AssertClose(whole, sliced, dtype);
    }

    [Fact]
    public void RefusesShapesThatDoNotMatch()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => RowSlicedProduct.AddTransposedA(zeros(10, 4), zeros(3, 9), zeros(3, 4), beta: 0));
        Assert.Contains("[10, 4]", e.Message);
        Assert.Contains("[3, 9]", e.Message);
    }

    private static void AssertClose(Tensor expected, Tensor actual, ScalarType dtype)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var e = expected.to(ScalarType.Float32);
        using var a = actual.to(ScalarType.Float32);
        Assert.False(a.isnan().any().item<bool>(), "the sliced product left NaNs where beta 0 should have written over them");
        double tolerance = dtype == ScalarType.BFloat16 ? 1.0 / 64 : 1e-5; // bf16: one rounding step of a value of magnitude ~4
        double worst = (e - a).abs().max().item<float>();
        double scale = e.abs().max().item<float>();
        Assert.True(worst <= tolerance * scale, $"largest difference {worst} against largest value {scale}");
    }
}
