using PatrickStar.Optimizer;
using PatrickStar.Runtime;
using PatrickStar.Training;
using TorchSharp.Modules;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>
/// The fused host kernel of the loss against the tensor ops it replaces. It switches the kernel process-wide, so it runs
/// alone (with the other process-wide tests): a test running beside it would see either path.
/// </summary>
[Collection(ProcessWideCounters.Name)]
public class CrossEntropyKernelTests
{
    private readonly ITestOutputHelper output;

    public CrossEntropyKernelTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private bool Available()
    {
        if (!CrossEntropyKernel.Available) output.WriteLine("the kernel is turned off: the tensor ops always run");
        return CrossEntropyKernel.Available;
    }

    private bool Runs(SimdWidth width) => SimdWidthSupport.Runs(width, output);

    private static T WithKernel<T>(bool on, Func<T> run)
    {
        bool was = CrossEntropyKernel.Enabled;
        CrossEntropyKernel.Enabled = on;
        try { return run(); }
        finally { CrossEntropyKernel.Enabled = was; }
    }

    /// <summary>Mean loss and d/d(logits) through <see cref="FusedCrossEntropy.Mean"/> (41 rows per block for V = 50000, 100 rows).</summary>
    private static (double Loss, Tensor Gradient) LossAndGradient(Tensor source, Tensor targets)
    {
        var leaf = source.clone().requires_grad_(true);
        var loss = FusedCrossEntropy.Mean(leaf * 1, targets);
        (loss * 3.0).backward();
        return (loss.item<float>(), leaf.grad!.to(ScalarType.Float32));
    }

    /// <summary>
    /// Same loss (1e-6 relative) and gradient as the tensor ops: fp32 within 1e-6 of the largest element (the kernel's exp and
    /// sums round differently in the last bit); bf16 rounded from those fp32 values, so equal but for a rare tie (at most one
    /// bf16 step, in at most 1 element in 10^4).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, SimdWidth.Auto)]
    [InlineData(ScalarType.BFloat16, SimdWidth.Auto)]
    [InlineData(ScalarType.Float32, SimdWidth.Vector512)]
    [InlineData(ScalarType.BFloat16, SimdWidth.Vector512)]
    [InlineData(ScalarType.Float32, SimdWidth.Vector256)]
    [InlineData(ScalarType.BFloat16, SimdWidth.Vector256)]
    [InlineData(ScalarType.Float32, SimdWidth.Scalar)]
    [InlineData(ScalarType.BFloat16, SimdWidth.Scalar)]
    public void KernelEqualsTheTensorOps(ScalarType dtype, SimdWidth width)
    {
        if (!Available() || !Runs(width)) return;
        using var scope = NewDisposeScope();
        manual_seed(11);
        long n = 100, v = 50_000;
        var source = (randn(n, v) * 3).to(dtype);
        var targets = randint(0, v, new long[] { n });
        var was = CrossEntropyKernel.Width;
        CrossEntropyKernel.Width = width;
        (double, Tensor) kernelRun;
        try { kernelRun = WithKernel(true, () => LossAndGradient(source, targets)); }
        finally { CrossEntropyKernel.Width = was; }
        var (kernelLoss, kernel) = kernelRun;
        var (tensorLoss, reference) = WithKernel(false, () => LossAndGradient(source, targets));

        double lossError = Math.Abs(kernelLoss - tensorLoss) / Math.Abs(tensorLoss);
        var diff = (kernel - reference).abs();
        double largest = reference.abs().max().item<float>(), worst = diff.max().item<float>();
        long differing = diff.gt(0).sum().item<long>();
        output.WriteLine($"{dtype} {width}: loss {kernelLoss:g9} vs {tensorLoss:g9} ({lossError:g3}); gradient max |diff| {worst:g3} of {largest:g3}, {differing} elements differ");
        Assert.InRange(lossError, 0, 1e-6);
        if (dtype == ScalarType.Float32)
        {
            Assert.InRange(worst, 0, 1e-6 * largest);
            return;
        }
        Assert.InRange(differing, 0, n * v / 10_000);
        Assert.True(diff.le(reference.abs() / 128 + 1e-30).all().item<bool>(), "a bf16 gradient differs by more than one bf16 step");
    }

    /// <summary>
    /// The bf16 head's loss makes no fp32 copy of its blocks: its forward peak is below the tensor ops' by most of one block's
    /// fp32 copy (4 B × 104 rows × V = 8.3 MB for V = 20,000; 512 rows, one group, as in BlockedHeadLossTests). Measured
    /// 0.83-0.91 of the copy (glibc's peak moves by a few hundred KB between runs), so the bound is three quarters; with the
    /// tensor ops forced back the kernel's run is no lower at all (41.55 vs 39.37 MB).
    /// </summary>
    [Fact]
    public void Bf16HeadLossMakesNoFp32CopyOfItsBlocks()
    {
        if (!Available()) return;
        const long n = 512, v = 20_000, h = 256;
        manual_seed(8);
        using var hidden = randn(n, h).to(ScalarType.BFloat16).requires_grad_(true);
        using var weight = new Parameter((randn(v, h) * 0.1).to(ScalarType.BFloat16));
        using var targets = randint(0, v, new long[] { n });
        long Peak(bool kernel) => WithKernel(kernel, () => BlockedHeadLossTests.ForwardPeak(hidden, weight, targets));
        Peak(false); // the allocator's first touch
        long tensorOps = Peak(false), fused = Peak(true);
        long copy = 4 * BlockedHeadLoss.GroupBlockRows(v) * v;
        output.WriteLine($"forward peak: tensor ops {tensorOps:N0}, kernel {fused:N0}, one block's fp32 copy {copy:N0}");
        Assert.True(fused <= tensorOps - copy * 3 / 4, $"the kernel's forward peak {fused:N0} is not below the tensor ops' {tensorOps:N0} by a block's fp32 copy ({copy:N0})");
    }
}
