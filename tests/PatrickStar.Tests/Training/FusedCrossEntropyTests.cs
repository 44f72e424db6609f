using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Tests.Training;

/// <summary>The blocked cross-entropy (gradient written over the logits in forward) against the unfused upcast + cross_entropy.</summary>
public class FusedCrossEntropyTests
{
    public FusedCrossEntropyTests() => TorchRuntime.EnsureLoaded();

    /// <summary>
    /// Loss and input gradient, over several row blocks (V = 50000 gives 41 rows per block; 100 rows), with an incoming
    /// gradient of 1 and of 3 (a scaled loss). fp32: the loss within 1e-6 relative, the gradient within 4e-6 of the largest
    /// (far below 1e-6 absolute; the reference's own backward takes softmax as exp(log_softmax), which carries the rounding
    /// of the log-sum-exp, about 1e-6 relative). bf16 logits: the loss within 1e-6 (both compute in fp32
    /// from the same values); the bf16 gradients within one bf16 step at the largest (2^-7 of it).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 1.0)]
    [InlineData(ScalarType.Float32, 3.0)]
    [InlineData(ScalarType.BFloat16, 1.0)]
    [InlineData(ScalarType.BFloat16, 3.0)]
    public void EqualsTheUnfusedLossAndGradient(ScalarType dtype, double outerGradient)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        long n = 100, v = 50_000;
        var source = (randn(n, v) * 3).to(dtype);
        var targets = randint(0, v, new long[] { n });

        var referenceLeaf = source.clone().requires_grad_(true);
        var referenceLoss = F.cross_entropy(referenceLeaf.to(ScalarType.Float32), targets);
        (referenceLoss * outerGradient).backward();

        var fusedLeaf = source.clone().requires_grad_(true);
        var logits = fusedLeaf * 1; // a non-leaf, as a model's head output is
        var fusedLoss = FusedCrossEntropy.Mean(logits, targets);
        (fusedLoss * outerGradient).backward();

        Assert.Equal(ScalarType.Float32, fusedLoss.dtype);
        double referenceValue = referenceLoss.item<float>();
        Assert.Equal(referenceValue, fusedLoss.item<float>(), 1e-6 * Math.Abs(referenceValue));
        var expected = referenceLeaf.grad!.to(ScalarType.Float32);
        var actual = fusedLeaf.grad!.to(ScalarType.Float32);
        double largest = expected.abs().max().item<float>();
        double difference = (actual - expected).abs().max().item<float>();
        double tolerance = dtype == ScalarType.Float32 ? 4e-6 * largest : largest / 128;
        Assert.True(difference <= tolerance, $"gradients differ by {difference:g3} (largest {largest:g3}, tolerance {tolerance:g3})");
    }

    /// <summary>Without a gradient (evaluation), the logits are left as they were and the loss is the unfused one.</summary>
    [Fact]
    public void WithoutGradientTheLogitsAreUntouched()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var logits = randn(30, 70_000).to(ScalarType.BFloat16);
        var before = logits.clone();
        var targets = randint(0, 70_000, new long[] { 30 });
        double loss;
        using (no_grad()) loss = FusedCrossEntropy.Mean(logits, targets).item<float>();
        double reference = F.cross_entropy(logits.to(ScalarType.Float32), targets).item<float>();
        Assert.Equal(reference, loss, 1e-6 * Math.Abs(reference));
        Assert.True(logits.eq(before).all().item<bool>());
    }
}
