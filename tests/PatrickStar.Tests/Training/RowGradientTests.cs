using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Training;

/// <summary>The embedding's gradient taken as rows (added in place) against autograd's dense accumulation.</summary>
public class RowGradientTests
{
    private readonly ITestOutputHelper output;

    public RowGradientTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <summary>
    /// The plain trainer's backward (rows into .grad) against the same model's backward without an engine (dense lookup
    /// gradient summed by autograd), twice in a row (.grad empty, then holding the first backward's sums): every gradient
    /// equal, the tied embedding's within the rounding of a different summation order (fp32: 1e-6 relative; bf16: one bf16
    /// step of the largest gradient).
    /// </summary>
    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Bf16)]
    public void PlainTrainerGradientsEqualAutogradsDenseSums(Precision precision)
    {
        var config = TrainingHarness.Config(steps: 1, precision);
        var gpt = new GptConfig(TrainingHarness.Vocab, 32, 2, 32, 4);
        manual_seed(11);
        using var reference = new GptModel(gpt);
        using var ours = new GptModel(gpt);
        ours.load_state_dict(reference.state_dict());
        if (precision != Precision.Fp32) reference.to(PlainEngine.ComputeType(precision));
        reference.train();
        using var engine = new PlainEngine(ours, config, CPU);
        manual_seed(12);
        var ids = randint(0, TrainingHarness.Vocab, new long[] { 4, 32 }); // 128 tokens over 64 ids: repeated rows
        var targets = randint(0, TrainingHarness.Vocab, new long[] { 4 * 32 });
        Tensor Loss(GptModel m) => nn.functional.cross_entropy(m.call(ids).reshape(-1, TrainingHarness.Vocab).to(ScalarType.Float32), targets);

        for (int pass = 0; pass < 2; pass++)
        {
            // bf16: the engine's next backward moves .grad into its fp32 accumulators and zeroes it; .grad then holds one pass.
            if (precision != Precision.Fp32)
                foreach (var p in reference.parameters()) p.grad = null;
            using (var loss = Loss(reference)) loss.backward();
            using (var loss = Loss(ours)) engine.Backward(loss);
            var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.to(ScalarType.Float32));
            foreach (var (name, p) in ours.named_parameters())
            {
                using var g = p.grad;
                Assert.True(g is not null, $"{name}: no gradient");
                using var actual = g.to(ScalarType.Float32);
                var want = expected[name];
                double scale = want.abs().max().item<float>();
                double tolerance = precision == Precision.Fp32 ? 1e-6 : 1.0 / 128;
                double worst = (actual - want).abs().max().item<float>() / Math.Max(scale, 1e-30);
                output.WriteLine($"pass {pass} {name}: worst difference {worst:E2} of the largest gradient");
                Assert.True(worst <= tolerance, $"pass {pass}, {name}: gradients differ by {worst:E2} of the largest ({tolerance:E1} allowed)");
            }
        }
    }

    /// <summary>The chunk engine's slot: the rows replace the weight (zeros elsewhere) or add to the gradient already there.</summary>
    [Fact]
    public void RowsIntoSlotEqualTheDenseGradient()
    {
        manual_seed(13);
        var slot = randn(10, 4); // holds the weight
        var idx = tensor(new long[] { 1, 3, 3, 0, 9, 3 });
        var rows = randn(6, 4);
        var dense = zeros(10, 4).index_add_(0, idx, rows, 1);
        using var gradient = new ParameterGradient();
        gradient.RowsIntoSlot(slot, idx, rows);
        Assert.Equal(SlotContent.Gradient, gradient.Content);
        Assert.True(slot.allclose(dense, rtol: 0, atol: 1e-6), "first contribution: the rows over zeros");

        var head = randn(10, 4);
        gradient.Clear();
        gradient.IntoSlot(slot, head);
        gradient.RowsIntoSlot(slot, idx, rows);
        Assert.True(slot.allclose(head + dense, rtol: 1e-6, atol: 1e-6), "later contribution: added to the slot's gradient");
    }
}
