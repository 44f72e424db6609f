using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Layers;

/// <summary>The README's user-model example (ReadmeExample.cs) is the code that compiles here, and it trains.</summary>
public class ReadmeExampleTests
{
    public ReadmeExampleTests() => TorchRuntime.EnsureLoaded();

    private static string RepositoryFile(string name, string? start = null)
    {
        for (var dir = new DirectoryInfo(start ?? AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PatrickStar.sln"))) return Path.Combine(dir.FullName, name);
        throw new FileNotFoundException($"no PatrickStar.sln above {AppContext.BaseDirectory}");
    }

    [Fact]
    public void TheReadmeShowsTheCompiledExample()
    {
        var lines = File.ReadAllLines(RepositoryFile("tests/PatrickStar.Tests/Layers/ReadmeExample.cs"));
        int begin = Array.FindIndex(lines, l => l.Contains("README example begins")), end = Array.FindIndex(lines, l => l.Contains("README example ends"));
        var example = string.Join("\n", lines[(begin + 1)..end]);
        Assert.True(end - begin - 1 <= 30, $"the example has {end - begin - 1} lines; the README promises 30 or fewer");
        Assert.Contains(example, File.ReadAllText(RepositoryFile("README.md")).Replace("\r\n", "\n"));
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
