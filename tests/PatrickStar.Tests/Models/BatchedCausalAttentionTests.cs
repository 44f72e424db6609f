using PatrickStar.Models.Generation;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Tests.Models;

public class BatchedCausalAttentionTests
{
    public BatchedCausalAttentionTests() => TorchRuntime.EnsureLoaded();

    /// <summary>libtorch's fused causal attention on the same fused projection, heads merged: the reference.</summary>
    private static Tensor Reference(Tensor qkv, int heads)
    {
        long b = qkv.shape[0], t = qkv.shape[1], h = qkv.shape[2] / 3;
        var parts = qkv.split(h, dim: 2);
        Tensor Heads(Tensor z) => z.view(b, t, heads, h / heads).transpose(1, 2);
        return F.scaled_dot_product_attention(Heads(parts[0]), Heads(parts[1]), Heads(parts[2]), is_casual: true)
            .transpose(1, 2).contiguous().view(b, t, h);
    }

    /// <summary>Output and input gradient of one attention under a fixed upstream gradient, in fp32.</summary>
    internal static (Tensor Output, Tensor Gradient) Run(Func<Tensor, int, Tensor> attend, Tensor qkv, Tensor upstream, int heads)
    {
        using var scope = NewDisposeScope();
        var x = qkv.detach().requires_grad_();
        var y = attend(x, heads);
        y.backward(new[] { upstream });
        return (y.detach().to(ScalarType.Float32).MoveToOuterDisposeScope(), x.grad!.to(ScalarType.Float32).MoveToOuterDisposeScope());
    }

    internal static double MaxRelativeError(Tensor actual, Tensor expected)
    {
        using var diff = (actual - expected).abs().max();
        using var scale = expected.abs().max();
        return diff.item<float>() / scale.item<float>();
    }

    /// <summary>T = 24 runs the causal softmax's rows in scalar tails at every width; 80 in whole vector steps and tails.</summary>
    [Theory]
    [InlineData(ScalarType.Float32, 1e-5, 24)]
    [InlineData(ScalarType.BFloat16, 2e-2, 24)] // bf16 scores and probabilities: 8 bits of mantissa, a few roundings deep
    [InlineData(ScalarType.Float32, 1e-5, 80)]
    [InlineData(ScalarType.BFloat16, 2e-2, 80)]
    public void EqualsFusedAttentionForwardAndBackward(ScalarType dtype, double tolerance, long t)
    {
        manual_seed(7);
        using var qkv = randn(2, t, 3 * 32).to(dtype);
        using var upstream = randn(2, t, 32).to(dtype);
        var (y, g) = Run(BatchedCausalAttention.Attend, qkv, upstream, heads: 4);
        var (yRef, gRef) = Run(Reference, qkv, upstream, heads: 4);
        using (y) using (g) using (yRef) using (gRef)
        {
            Assert.True(MaxRelativeError(y, yRef) < tolerance, $"output differs by {MaxRelativeError(y, yRef):e2} of its largest value");
            Assert.True(MaxRelativeError(g, gRef) < tolerance, $"input gradient differs by {MaxRelativeError(g, gRef):e2} of its largest value");
        }
    }

    [Fact]
    public void AppliesOnlyToBf16OnCpuWithoutDropoutUpToItsLength()
    {
        Assert.True(BatchedCausalAttention.Applies(ScalarType.BFloat16, CPU, 256, 0));
        Assert.False(BatchedCausalAttention.Applies(ScalarType.Float32, CPU, 256, 0));
        Assert.False(BatchedCausalAttention.Applies(ScalarType.BFloat16, CPU, 256, 0.1));
        Assert.False(BatchedCausalAttention.Applies(ScalarType.BFloat16, CPU, BatchedCausalAttention.MaxSequence + 1, 0));
        Assert.False(BatchedCausalAttention.Applies(ScalarType.BFloat16, new Device(DeviceType.CUDA, 0), 256, 0));
    }
}

/// <summary>The causal softmax kernel inside attention against the masked tensor ops it replaces (a process-wide switch: run alone).</summary>
[Collection(PatrickStar.Tests.Training.ProcessWideCounters.Name)]
public class BatchedCausalAttentionKernelTests
{
    public BatchedCausalAttentionKernelTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void KernelEqualsTheMaskedTensorOps()
    {
        manual_seed(9);
        using var qkv = randn(2, 80, 3 * 64).to(ScalarType.BFloat16);
        using var upstream = randn(2, 80, 64).to(ScalarType.BFloat16);
        bool was = PatrickStar.Training.CausalSoftmax.Enabled;
        (Tensor, Tensor) masked;
        try
        {
            PatrickStar.Training.CausalSoftmax.Enabled = false;
            masked = BatchedCausalAttentionTests.Run(BatchedCausalAttention.Attend, qkv, upstream, heads: 2);
        }
        finally { PatrickStar.Training.CausalSoftmax.Enabled = was; }
        var (y, g) = BatchedCausalAttentionTests.Run(BatchedCausalAttention.Attend, qkv, upstream, heads: 2);
        var (yMasked, gMasked) = masked;
        using (y) using (g) using (yMasked) using (gMasked)
        {
            Assert.True(BatchedCausalAttentionTests.MaxRelativeError(y, yMasked) < 2e-2, $"output differs by {BatchedCausalAttentionTests.MaxRelativeError(y, yMasked):e2}");
            Assert.True(BatchedCausalAttentionTests.MaxRelativeError(g, gMasked) < 2e-2, $"input gradient differs by {BatchedCausalAttentionTests.MaxRelativeError(g, gMasked):e2}");
        }
    }
}
