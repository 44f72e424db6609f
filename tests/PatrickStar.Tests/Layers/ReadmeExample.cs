// The README's example of a user-written model trained by the chunk engine, compiled and run by ReadmeExampleTests so
// that it cannot rot: the lines between the markers must appear in README.md as they are here.
using PatrickStar.Hooks; // these two for the custom layer below
using TorchSharp.Modules;
// README example begins
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Layers;
using PatrickStar.Training;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
public sealed class TinyLm : Module<Tensor, Tensor> // standard layers: the engine swaps in chunk-aware twins
{
    private readonly Module<Tensor, Tensor> embed = Embedding(64, 64), norm = LayerNorm(64), head = Linear(64, 64, hasBias: false),
        mlp = Sequential(Linear(64, 256), GELU(), Linear(256, 64), new ChunkRmsNorm(64));
    public TinyLm() : base(nameof(TinyLm)) => RegisterComponents();
    public override Tensor forward(Tensor ids) => head.call(mlp.call(norm.call(embed.call(ids))));
}
public static class TinyLmTraining
{
    public static List<double> Train(TrainingConfig config, IEnumerable<(Tensor X, Tensor Y)> batches)
    {
        using var engine = ChunkedEngine.Initialize(() => new TinyLm(), config);
        var losses = new List<double>();
        foreach (var (x, y) in batches.Take(config.Steps))
        {
            using var scope = NewDisposeScope();
            var loss = LanguageModelLoss.CrossEntropy(engine.Forward(x.to(engine.Device)), y.to(engine.Device));
            losses.Add(loss.item<float>());
            engine.Backward(loss);
            engine.Step(config.Optimizer.LearningRate);
        }
        return losses;
    }
}
// README example ends
// README layer begins
public sealed class ScaledLinear : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;          // registered as "weight"
    public ScaledLinear(long input, long output) : base(nameof(ScaledLinear))
    {
        weight = new Parameter(randn(output, input) / Math.Sqrt(input));
        RegisterComponents();
    }
    public string Path { get; set; } = nameof(ScaledLinear);
    public override Tensor forward(Tensor x) => ParameterOps.LinearNoBias(x, weight, Path) * 0.5;
}
// README layer ends
