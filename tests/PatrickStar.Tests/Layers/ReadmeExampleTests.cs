using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Layers;

/// <summary>The README's user-model example (ReadmeExample.cs) is the code that compiles here, and it trains.</summary>
public class ReadmeExampleTests
{
    public ReadmeExampleTests() => TorchRuntime.EnsureLoaded();

    internal static string RepositoryFile(string name, string? start = null)
    {
        for (var dir = new DirectoryInfo(start ?? AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PatrickStar.sln"))) return Path.Combine(dir.FullName, name);
        throw new FileNotFoundException($"no PatrickStar.sln above {AppContext.BaseDirectory}");
    }

    private static string[] Block(string marker)
    {
        var lines = File.ReadAllLines(RepositoryFile("tests/PatrickStar.Tests/Layers/ReadmeExample.cs"));
        int begin = Array.FindIndex(lines, l => l == $"// README {marker} begins"), end = Array.FindIndex(lines, l => l == $"// README {marker} ends");
        return lines[(begin + 1)..end];
    }

    [Fact]
    public void TheReadmeShowsTheCompiledExamples()
    {
        var readme = File.ReadAllText(RepositoryFile("README.md")).Replace("\r\n", "\n");
        var example = Block("example");
        Assert.True(example.Length <= 30, $"the example has {example.Length} lines; the README promises 30 or fewer");
        Assert.Contains(string.Join("\n", example), readme);
        Assert.Contains(string.Join("\n", Block("layer")), readme);
    }

    [Fact]
    public void TheCustomLayerIsAcceptedAndNamed()
    {
        var model = torch.nn.Sequential(new ScaledLinear(4, 4));
        PatrickStar.Layers.ChunkAwareModel.Prepare(model);
        Assert.Equal("0", ((ScaledLinear)model[0]).Path);
    }

    [Fact]
    public void TheExampleTrains()
    {
        var config = TrainingHarness.Config(steps: 6);
        config.Engine = "chunked";
        var data = TrainingHarness.CyclicData();
        var rng = new PatrickStar.Data.SplitMix64(1);
        using var scope = NewDisposeScope();
        var batches = Enumerable.Range(0, config.Steps).Select(_ => data.Batch(PatrickStar.Data.Split.Train, 4, 16, rng, CPU)).ToList();
        var losses = TinyLmTraining.Train(config, batches);
        Assert.Equal(config.Steps, losses.Count);
        Assert.True(losses[^1] < losses[0], $"the loss must fall: {string.Join(", ", losses)}");
    }
}
