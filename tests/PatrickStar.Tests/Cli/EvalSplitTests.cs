using System.Text.Json;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar eval --split val`: a checkpoint's own validation split, with the data and fraction recorded in it.</summary>
public class EvalSplitTests
{
    public EvalSplitTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void ValSplitIsTheRunsHeldOutTextAsTrainingSplitIt()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 120).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));
        string save = Path.Combine(dir.Path, "run");
        string config = dir.File("run.json", "{ \"data\": { \"validation_fraction\": 0.25 } }");
        var (code, _, err) = Pstar("train", "--config", config, "--model", "gpt2-tiny", "--layers", "1", "--data", data, "--steps", "1", "--batch", "2",
            "--seq", "16", "--eval-interval", "0", "--save-dir", save, "--plain-output", "--device", "cpu");
        Assert.True(code == 0, err);

        (code, var output, err) = Pstar("eval", "--checkpoint", save, "--split", "val", "--seq", "16", "--batch", "3", "--json", "--device", "cpu");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("val", json.RootElement.GetProperty("split").GetString());

        // Reference: the same file split with the recorded fraction (0.25, not the default 0.1), the checkpoint's weights.
        var dataset = TokenDataset.FromFiles(new[] { data }, Gpt2Tokenizer.Instance, 0.25);
        using var model = GptCheckpoints.LoadModel(save);
        model.eval();
        var expected = SequentialEvaluation.Run(model, dataset.Tokens(Split.Validation), 3, 16, CPU);
        Assert.Equal(expected.Tokens, json.RootElement.GetProperty("tokens").GetInt64());
        Assert.Equal(expected.MeanLoss, json.RootElement.GetProperty("loss").GetDouble(), 6);
    }

    [Fact]
    public void ARunsSplitNeedsACheckpoint()
    {
        using var dir = new TempDir();
        string data = dir.File("d.txt", "some text to read");
        var (code, _, err) = Pstar("eval", "--init-from", Path.Combine(dir.Path, "m.safetensors"), "--data", data, "--split", "val");
        Assert.Equal(1, code);
        Assert.Contains("--split val takes the run's own split from a training checkpoint: give --checkpoint DIR", err);
        (code, _, err) = Pstar("eval", "--init-from", Path.Combine(dir.Path, "m.safetensors"));
        Assert.Equal(1, code);
        Assert.Contains("--data is required with --split all", err);
    }

    [Fact]
    public void EveryCommandsHelpEndsWithExamplesOfItself()
    {
        var root = PatrickStar.Cli.Commands.PstarCommandLine.Build();
        foreach (var command in root.Subcommands)
        {
            var (code, output, err) = Pstar(command.Name, "--help");
            Assert.True(code == 0, $"`pstar {command.Name} --help` exited with {code}: {err}");
            int at = output.IndexOf("\nExamples:\n", StringComparison.Ordinal);
            Assert.True(at > output.IndexOf("Options:", StringComparison.Ordinal), $"`pstar {command.Name} --help` has no examples after its options:\n{output}");
            var examples = output[(at + "\nExamples:\n".Length)..].Split('\n').TakeWhile(l => l.StartsWith("  pstar ")).ToList();
            Assert.Contains(examples, l => l.Contains($"pstar {command.Name}") || l.Contains($"-- {command.Name}"));
        }
    }
}
