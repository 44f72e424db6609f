using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using TorchSharp.Modules;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Tests.Training;

/// <summary>The blocked LM head + loss against the unblocked reference: matmul to full logits, then cross_entropy.</summary>
public class BlockedHeadLossTests
{
    private readonly ITestOutputHelper output;

    public BlockedHeadLossTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    private sealed record Result(double Loss, Tensor HiddenGrad, Tensor WeightGrad);

    /// <summary>Loss, d/d(hidden) and d/dW of hidden [n, h] through a head [v, h] stored in <paramref name="weightType"/>.</summary>
    private static Result Run(bool blocked, Tensor hiddenSource, Tensor weightSource, Tensor targets, ScalarType weightType, double outerGradient, long blockRows,
        long groupRows = 0)
    {
        var leaf = hiddenSource.clone().requires_grad_(true);
        var hidden = leaf * 1; // a non-leaf, as the final norm's output is
        var weight = new Parameter(weightSource.to(weightType).clone()); // to() of the same dtype would share the tensor (and its .grad)
        var loss = blocked
            ? BlockedHeadLoss.Mean(hidden, weight, targets, "lm_head", blockRows, groupRows: groupRows)
            : F.cross_entropy(F.linear(hidden, weight.to(hidden.dtype)).to(ScalarType.Float32), targets);
        (loss * outerGradient).backward();
        Assert.Equal(ScalarType.Float32, loss.dtype);
        Assert.Equal(weightType, weight.grad!.dtype);
        return new Result(loss.item<float>(), leaf.grad!.to(ScalarType.Float32).clone(), weight.grad!.to(ScalarType.Float32).clone());
    }

    /// <summary>
    /// Relative error in the L2 norm, ‖actual − expected‖ / ‖expected‖. (Element-wise relative figures mislead here: d/d(hidden)
    /// sums terms that nearly cancel, so a row's value carries the rounding of terms far larger than itself, in the
    /// reference as much as in the blocked op; the two run their matmuls with different kernels for different row counts.)
    /// </summary>
    private static double Relative(Tensor actual, Tensor expected) =>
        (actual - expected).norm().item<float>() / (double)expected.norm().item<float>();

    /// <summary>
    /// 50 rows in blocks of 7 (not a multiple), V = 3000, h = 48, with an incoming gradient of 1 and of 3 (a scaled loss).
    /// fp32: loss and both gradients within 1e-6 relative. bf16 activations and weight (products per group: all 50 rows in
    /// one, d/dW then in bf16; or groups of 14 and 21 rows, the last one short, d/dW summed in fp32),
    /// and bf16 storage under fp32 activations (bf16-fp32, weight upcast a slice at a time): the loss within 1e-6 relative
    /// when computed in fp32, else 1e-3, and the gradients within 2^-7 relative (one bf16 step).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, ScalarType.Float32, 1.0, 7)]
    [InlineData(ScalarType.Float32, ScalarType.Float32, 3.0, 7)]
    [InlineData(ScalarType.Float32, ScalarType.Float32, 1.0, 0)]
    [InlineData(ScalarType.Float32, ScalarType.Float32, 1.0, 7, 14)]
    [InlineData(ScalarType.Float32, ScalarType.Float32, 3.0, 7, 21)]
    [InlineData(ScalarType.BFloat16, ScalarType.BFloat16, 1.0, 7)]
    [InlineData(ScalarType.BFloat16, ScalarType.BFloat16, 3.0, 7)]
    [InlineData(ScalarType.BFloat16, ScalarType.BFloat16, 1.0, 7, 14)]
    [InlineData(ScalarType.BFloat16, ScalarType.BFloat16, 3.0, 7, 21)]
    [InlineData(ScalarType.Float32, ScalarType.BFloat16, 3.0, 7)]
    public void EqualsTheUnblockedHeadAndLoss(ScalarType activationType, ScalarType weightType, double outerGradient, long blockRows, long groupRows = 0)
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        long n = 50, v = 3000, h = 48;
        var hidden = randn(n, h).to(activationType);
        var weight = randn(v, h) * 0.3;
        var targets = randint(0, v, new long[] { n });
        var reference = Run(false, hidden, weight, targets, weightType, outerGradient, blockRows);
        var blocked = Run(true, hidden, weight, targets, weightType, outerGradient, blockRows, groupRows);

        double lossError = Math.Abs(blocked.Loss - reference.Loss) / Math.Abs(reference.Loss);
        double hiddenError = Relative(blocked.HiddenGrad, reference.HiddenGrad);
        double weightError = Relative(blocked.WeightGrad, reference.WeightGrad);
        output.WriteLine($"loss {reference.Loss:g9} vs {blocked.Loss:g9}: {lossError:g3}; d/dhidden {hiddenError:g3}; d/dW {weightError:g3}");
        bool fp32 = activationType == ScalarType.Float32;
        Assert.InRange(lossError, 0, fp32 ? 1e-6 : 1e-3);
        Assert.InRange(hiddenError, 0, fp32 ? 1e-6 : 1.0 / 128);
        Assert.InRange(weightError, 0, weightType == ScalarType.Float32 ? 1e-6 : 1.0 / 128);
    }

    /// <summary>
    /// The head's kept d/dW storage, reused step after step, gives every step the gradient a fresh one gives: its stale values
    /// are never read (fp32 summed over blocks; bf16 made by one group's product; fp32 summed over bf16 groups of 14 rows).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, 0)]
    [InlineData(ScalarType.Float32, 14)]
    [InlineData(ScalarType.BFloat16, 0)]
    [InlineData(ScalarType.BFloat16, 14)]
    public void KeptWeightGradientIsWrittenOverEachStep(ScalarType type, long groupRows)
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        var hidden = randn(40, 32).to(type);
        var weight = new Parameter((randn(900, 32) * 0.3).to(type));
        var targets = randint(0, 900, new long[] { 40 });
        using var kept = new HeadGradientBuffer();
        Tensor Step(HeadGradientBuffer? buffer)
        {
            weight.grad = null;
            BlockedHeadLoss.Mean(hidden.clone().requires_grad_(true), weight, targets, "lm_head", blockRows: 7, weightGradient: buffer, groupRows: groupRows).backward();
            return weight.grad!.to(ScalarType.Float32).clone();
        }
        var fresh = Step(null);
        for (int step = 0; step < 3; step++)
        {
            var reused = Step(kept);
            Assert.True(reused.eq(fresh).all().item<bool>(), $"step {step}: the kept d/dW gives another gradient (max difference {(reused - fresh).abs().max().item<float>():g3})");
        }
    }

    /// <summary>
    /// The bf16 head's forward peak (glibc's in-use bytes, sampled) against the estimator's <see cref="HeadLossEstimate.ForwardPeak"/>,
    /// within 20%: V = 20,000, h = 256, so groups of 104·16 = 1664 rows; 512 rows make one group (d/dW in bf16), 2048 rows
    /// two (d/dW in fp32), and 2048 rows at fp32 make the block loop's peak.
    /// </summary>
    [Theory]
    [InlineData(Precision.Bf16, 512)]
    [InlineData(Precision.Bf16, 2048)]
    [InlineData(Precision.Fp32, 2048)]
    public void ForwardPeakIsTheEstimates(Precision precision, long n)
    {
        const long v = 20_000, h = 256;
        var type = precision == Precision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        manual_seed(8);
        using var hidden = randn(n, h).to(type).requires_grad_(true);
        using var weight = new Parameter((randn(v, h) * 0.1).to(type));
        using var targets = randint(0, v, new long[] { n });
        long Peak() => ForwardPeak(hidden, weight, targets);
        Peak(); // the allocator's first touch
        long measured = Peak(), estimate = HeadLossEstimate.ForwardPeak(n, h, v, precision, hostKernel: CrossEntropyKernel.Available);
        double ratio = (double)estimate / measured;
        output.WriteLine($"{precision} {n} rows: estimate {estimate:N0}, measured {measured:N0}, ratio {ratio:0.000}");
        Assert.InRange(ratio, 0.8, 1.2);
    }

    /// <summary>glibc's in-use bytes at the end of the head's forward (sampled) above the reading before it; backward runs after.</summary>
    internal static long ForwardPeak(Tensor hidden, Parameter weight, Tensor targets)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long baseline = MemoryMeter.NativeInUse();
        using var sampler = new PeakSampler();
        sampler.Start();
        long peak;
        using (var scope = NewDisposeScope())
        {
            var loss = BlockedHeadLoss.Mean(hidden, weight, targets, "lm_head");
            peak = sampler.TakePeak() - baseline;
            loss.backward();
        }
        sampler.Stop();
        weight.grad = null;
        hidden.grad = null;
        return peak;
    }

    /// <summary>Without a gradient (evaluation) the loss is the reference's and nothing is kept for backward.</summary>
    [Fact]
    public void WithoutGradientTheLossIsTheReferences()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var hidden = randn(2, 9, 16);
        var weight = new Parameter(randn(500, 16));
        var targets = randint(0, 500, new long[] { 2, 9 });
        double loss, reference;
        using (no_grad())
        {
            loss = BlockedHeadLoss.Mean(hidden, weight, targets, "lm_head", blockRows: 4).item<float>();
            reference = F.cross_entropy(F.linear(hidden, weight).reshape(-1, 500), targets.reshape(-1)).item<float>();
        }
        Assert.Equal(reference, loss, 1e-6 * reference);
    }

    /// <summary>
    /// Both families through their own Loss (blocked head) against their logits + cross-entropy: the same loss and the same
    /// gradient for every parameter, for GPT (tied head) and LLaMA with a tied and an untied head.
    /// </summary>
    [Theory]
    [InlineData("gpt", false)]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    public void ModelLossEqualsTheLogitsPath(string family, bool tied)
    {
        using var scope = NewDisposeScope();
        nn.Module<Tensor, Tensor> Build()
        {
            manual_seed(9);
            return family == "gpt"
                ? new GptModel(new GptConfig(VocabSize: 300, ContextLength: 16, Layers: 2, Hidden: 32, Heads: 4))
                : new LlamaForCausalLM(new LlamaConfig(300, ContextLength: 16, Layers: 2, Hidden: 32, Heads: 4, KvHeads: 2, Intermediate: 64, TieEmbeddings: tied));
        }
        var viaLogits = Build();
        var viaBlocks = Build();
        Assert.IsAssignableFrom<ILanguageModelLoss>(viaBlocks);
        var ids = randint(0, 300, new long[] { 3, 16 });
        var targets = randint(0, 300, new long[] { 3, 16 });
        var reference = LanguageModelLoss.CrossEntropy(viaLogits.call(ids), targets);
        var loss = LanguageModelLoss.Of(viaBlocks, ids, targets);
        reference.backward();
        loss.backward();
        Assert.Equal(reference.item<float>(), loss.item<float>(), 1e-6 * reference.item<float>());
        var expected = viaLogits.named_parameters().ToList();
        var actual = viaBlocks.named_parameters().ToList();
        Assert.Equal(expected.Select(p => p.name), actual.Select(p => p.name));
        for (int i = 0; i < expected.Count; i++)
        {
            double error = Relative(actual[i].parameter.grad!, expected[i].parameter.grad!);
            Assert.True(error <= 1e-5, $"{expected[i].name}: gradients differ by {error:g3} relative");
        }
    }
}
