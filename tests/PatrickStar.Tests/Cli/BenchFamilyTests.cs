using System.Text.Json.Nodes;
using PatrickStar.Cli.Benchmarks;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar bench --family llama`: the trainers and scale parts build LLaMAs of LLaMA's proportions at the width asked.</summary>
public class BenchFamilyTests
{
    private static BenchSettings Settings(string family) => new()
    {
        Parts = ["trainers"], Family = family, Hidden = 1024, Layers = 8, Heads = 16, Seq = 512, Batch = 2, Steps = 1,
    };

    [Fact]
    public void TrainersBuildsALlamaOfLlamasProportions()
    {
        var choice = GptRun.ResolveChoice(TrainersPart.Config(Settings("llama"), Precision.Fp32));
        Assert.Equal(new LlamaConfig(GptConfig.Gpt2VocabSize, 512, 8, 1024, 16, 4, 2816), choice.Llama);
        Assert.False(GptRun.ResolveChoice(TrainersPart.Config(Settings("gpt2"), Precision.Fp32)).IsLlama);
    }

    [Fact]
    public void ScaleGrowsLayersAtALlamaShapeUnderTheBudgets()
    {
        foreach (int layers in new[] { 1, 7 })
        {
            var config = ScaleBenchmark.Config("dynamic", layers, 1L << 30, 16L << 30, 4096, 32, 64, Precision.Bf16Fp32, "llama", kvHeads: 8);
            Assert.Equal(new LlamaConfig(GptConfig.Gpt2VocabSize, 64, layers, 4096, 32, 8, 11008), GptRun.ResolveChoice(config).Llama);
            Assert.Equal((1L << 30, 16L << 30, ChunkPlacement.Dynamic), (config.Chunks.DeviceMemory, config.Chunks.HostMemory, config.Chunks.Placement));
            Assert.Equal("chunked", config.Engine);
        }
        Assert.Equal("plain", ScaleBenchmark.Config("plain", 1, 1, 1, 64, 4, 16, Precision.Fp32, "llama").Engine);
    }

    [Fact]
    public void QuickTrainersRunTrainsATinyLlamaUnderEveryEngine()
    {
        using var dir = new TempDir();
        string reportDir = Path.Combine(dir.Path, "report");
        var (code, output, err) = Pstar("bench", "--parts", "trainers", "--quick", "--family", "llama", "--hidden", "32", "--layers", "2", "--heads", "4",
            "--seq", "16", "--batch", "1", "--steps", "1", "--precision", "fp32", "--report", reportDir);
        Assert.True(code == 0, err + output);
        var trainers = JsonNode.Parse(File.ReadAllText(Path.Combine(reportDir, "report.json")))!["trainers"]!;
        Assert.Equal("llama", (string?)trainers["model"]!["family"]);
        Assert.Equal(1, (int)trainers["model"]!["kv_heads"]!);
        Assert.Equal(new LlamaConfig(GptConfig.Gpt2VocabSize, 16, 2, 32, 4, 1, 256).ParameterCount, (long)trainers["model"]!["parameters"]!);
        var runs = trainers["runs"]!.AsArray();
        Assert.Equal(4, runs.Count);
        foreach (var run in runs) Assert.True(run!["error"] is null, (string?)run!["error"]);
        Assert.Contains("6·B·s·(l·(2h²", File.ReadAllText(Path.Combine(reportDir, "report.md")));
    }
}
