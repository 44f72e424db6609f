using System.Text.Json;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;

namespace PatrickStar.Tests.HfFolders;

/// <summary>`pstar export --out DIR`, then `generate` and `eval` on that folder, with the tokenizer files it holds.</summary>
public class HfFolderCliTests
{
    public HfFolderCliTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void ExportToAShardedFolderThenGenerateAndEvalFromIt()
    {
        using var dir = new TempDir();
        manual_seed(41);
        using var model = new GptModel(new GptConfig(VocabSize: GptConfig.Gpt2VocabSize, ContextLength: 64, Layers: 1, Hidden: 32, Heads: 2));
        model.eval();
        HuggingFaceGpt2Tests.WriteCheckpoint(Path.Combine(dir.Path, "run", "step-00000010"), model);
        string folder = Path.Combine(dir.Path, "hf");

        var (code, text, err) = Pstar("export", Path.Combine(dir.Path, "run"), "--out", folder, "--max-shard-size", "1MB");
        Assert.True(code == 0, err);
        Assert.Contains("tokenizer files: vocab.json, merges.txt, tokenizer.json", text);
        Assert.True(Directory.GetFiles(folder, "model-*-of-*.safetensors").Length >= 2);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors.index.json", "vocab.json", "merges.txt", "tokenizer.json" })
            Assert.True(File.Exists(Path.Combine(folder, f)), f);

        var options = new SamplingOptions(Temperature: 0);
        string expected = "Once upon a time" + new TextGenerator(model).Generate(Gpt2Tokenizer.Instance, "Once upon a time", 8, options) + Environment.NewLine;
        (code, text, err) = Pstar("generate", "--init-from", folder, "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0");
        Assert.True(code == 0, err);
        Assert.Equal(expected, text);

        string data = dir.File("data.jsonl", "{\"text\": \"The cat sat on the mat. The dog ran to the park and back again.\"}\n" +
                                             "{\"text\": \"Once upon a time there was a small model that read a short text.\"}\n");
        (code, text, err) = Pstar("eval", "--init-from", folder, "--data", data, "--seq", "8", "--json", "--cache-dir", Path.Combine(dir.Path, "cache"));
        Assert.True(code == 0, err);
        using (var json = JsonDocument.Parse(text)) Assert.True(json.RootElement.GetProperty("windows").GetInt32() >= 3);

        (code, _, err) = Pstar("eval", "--init-from", folder, "--data", data, "--tokenizer", "cl100k");
        Assert.Equal(1, code);
        Assert.Contains("has 100,277 tokens but the model", err);

        (code, _, err) = Pstar("export", Path.Combine(dir.Path, "run"), "--out", Path.Combine(dir.Path, "hf2"), "--max-shard-size", "lots");
        Assert.Equal(1, code);
        Assert.Contains("--max-shard-size 'lots' is not a size", err);
    }

    [Fact]
    public void TrainStartsFromAFolderWithItsTokenizerAndRefusesOneTooLarge()
    {
        using var dir = new TempDir();
        manual_seed(43);
        using var model = new GptModel(new GptConfig(VocabSize: GptConfig.Gpt2VocabSize, ContextLength: 32, Layers: 1, Hidden: 32, Heads: 2));
        string folder = Path.Combine(dir.Path, "hf");
        HuggingFaceGpt2Folder.Export(model, folder, ScalarType.Float32, 2_000_000);
        TokenizerFolder.Write("gpt2", null, folder);
        string data = dir.File("data.txt", string.Concat(Enumerable.Repeat("The cat sat on the mat and the dog ran in the park. ", 40)));
        string[] common = { "--data", data, "--steps", "1", "--batch", "2", "--seq", "16", "--eval-interval", "0", "--plain-output",
                            "--cache-dir", Path.Combine(dir.Path, "cache") };

        var (code, output, err) = Pstar(new[] { "train", "--init-from", folder }.Concat(common).ToArray());
        Assert.True(code == 0, err + output);

        (code, _, err) = Pstar(new[] { "train", "--init-from", folder, "--tokenizer", "o200k" }.Concat(common).ToArray());
        Assert.Equal(1, code);
        Assert.Contains($"tokenizer o200k-tiktoken has 200,019 tokens but the model ({folder}) has vocab_size = 50,257", err);
    }
}
