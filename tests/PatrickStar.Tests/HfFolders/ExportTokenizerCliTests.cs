using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Data;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.HfFolders;

/// <summary>A checkpoint records its run's tokenizer: export writes that tokenizer's files and its end-of-text ids, not GPT-2's.</summary>
public class ExportTokenizerCliTests
{
    public ExportTokenizerCliTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void ALlamaTrainedWithCl100kExportsCl100kFilesAndIds()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 60).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        string run = Path.Combine(dir.Path, "run"), folder = Path.Combine(dir.Path, "hf");
        var (code, _, err) = Pstar("train", "--model", "llama-tiny", "--tokenizer", "cl100k", "--set", "model.vocab_size=100277", "--data", data,
            "--steps", "1", "--batch", "2", "--seq", "32", "--eval-interval", "0", "--plain-output", "--device", "cpu", "--save-dir", run);
        Assert.True(code == 0, err);
        (code, var output, err) = Pstar("export", run, "--out", folder);
        Assert.True(code == 0, err);
        Assert.Contains("cl100k", output);

        Assert.True(File.Exists(Path.Combine(folder, TokenizerFolder.JsonFile)));
        Assert.Equal(Tokenizers.Resolve("cl100k").Encode("Hello, world!"), Tokenizers.Resolve(folder).Encode("Hello, world!"));
        foreach (var file in new[] { HfFolder.GenerationConfigFile, HfFolder.ConfigFile })
        {
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, file)))!;
            Assert.Equal(100_257, (int)json["eos_token_id"]!);
            Assert.Equal(100_257, (int)json["bos_token_id"]!);
        }

        // --tokenizer still chooses; GPT-2's end-of-text replaces cl100k's.
        (code, _, err) = Pstar("export", run, "--out", folder, "--tokenizer", "gpt2");
        Assert.True(code == 0, err);
        Assert.Equal(50_256, (int)JsonNode.Parse(File.ReadAllText(Path.Combine(folder, HfFolder.GenerationConfigFile)))!["eos_token_id"]!);
    }
}
