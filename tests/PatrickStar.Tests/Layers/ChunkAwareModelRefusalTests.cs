using PatrickStar.Engine;
using PatrickStar.Layers;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Tests.Layers;

/// <summary>What the chunk engine cannot manage is refused when it starts, in one line naming the module and the fix.</summary>
public class ChunkAwareModelRefusalTests
{
    public ChunkAwareModelRefusalTests() => TorchRuntime.EnsureLoaded();

    private sealed class WithConv : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> embed = Embedding(8, 4), block = Sequential(Conv1d(4, 4, 1));
        public WithConv() : base(nameof(WithConv)) => RegisterComponents();
        public override Tensor forward(Tensor x) => block.call(embed.call(x));
    }

    private sealed class OwnParameter : Module<Tensor, Tensor>
    {
        private readonly Parameter scale = new(ones(4));
        private readonly Module<Tensor, Tensor> embed = Embedding(8, 4);
        public OwnParameter() : base(nameof(OwnParameter)) => RegisterComponents();
        public override Tensor forward(Tensor x) => embed.call(x) * scale;
    }

    private sealed class ConcreteField : Module<Tensor, Tensor>
    {
        private readonly Linear proj = Linear(4, 4);
        public ConcreteField() : base(nameof(ConcreteField)) => RegisterComponents();
        public override Tensor forward(Tensor x) => proj.call(x);
    }

    private sealed class MaxNorm : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> embed = Embedding(8, 4, max_norm: 1.0);
        public MaxNorm() : base(nameof(MaxNorm)) => RegisterComponents();
        public override Tensor forward(Tensor x) => embed.call(x);
    }

    private sealed class CallsForward : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> embed = Embedding(TrainingHarness.Vocab, 8), head = Linear(8, TrainingHarness.Vocab);
        public CallsForward() : base(nameof(CallsForward)) => RegisterComponents();
        public override Tensor forward(Tensor x) => head.forward(embed.call(x)); // .forward skips the engine's hooks
    }

    private static string Refusal(Module<Tensor, Tensor> model)
    {
        var config = TrainingHarness.Config(steps: 1);
        config.Engine = "chunked";
        var e = Assert.Throws<NotSupportedException>(() => EngineFactory.Create(model, config, CPU));
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void AnUnsupportedLayerIsRefusedByItsPath()
    {
        var message = Refusal(new WithConv());
        Assert.StartsWith("module 'block.0' (Conv1d) owns parameters the chunk engine cannot manage", message);
        Assert.Contains("chunk-aware layer (README", message);
    }

    [Fact]
    public void AModuleOwningAParameterDirectlyIsRefused() =>
        Assert.StartsWith("module '(the model)' (OwnParameter) owns parameters", Refusal(new OwnParameter()));

    [Fact]
    public void AFieldThatCannotHoldTheTwinIsRefusedBeforeAnythingChanges()
    {
        var model = new ConcreteField();
        var message = Refusal(model);
        Assert.Equal("module 'proj' (Linear) cannot be swapped for its chunk-aware twin: field ConcreteField.proj is declared as Linear; " +
                     "declare it as Module<Tensor, Tensor>, or build it as ChunkLinear.", message);
        Assert.IsType<Linear>(model.named_modules().Single().module);
    }

    [Fact]
    public void EmbeddingOptionsTheTwinLacksAreRefused() =>
        Assert.Contains("module 'embed' (Embedding) uses max_norm", Refusal(new MaxNorm()));

    [Fact]
    public void ALayerCalledThroughForwardIsStoppedAtItsFirstStep()
    {
        var config = TrainingHarness.Config(steps: 1);
        config.Engine = "chunked";
        using var engine = EngineFactory.Create(new CallsForward(), config, CPU);
        using var ids = zeros(1, 4, dtype: ScalarType.Int64);
        var e = Assert.Throws<InvalidOperationException>(() => engine.Model.call(ids));
        Assert.Equal("layer 'head' ran without the chunk engine's pre-forward event: its parent called .forward(x); " +
                     "call submodules with .call(x) so that the engine can fetch their parameters.", e.Message);
    }
}
