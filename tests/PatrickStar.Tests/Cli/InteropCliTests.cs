using System.Text.Json;
using PatrickStar.Cli;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using TorchSharp;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar export`, `eval` and `generate`, run in-process on tiny models.</summary>
public class InteropCliTests
{
    public InteropCliTests() => TorchRuntime.EnsureLoaded();

    // GPT-2's vocabulary (the CLI tokenizes with it), everything else tiny.
    private static readonly GptConfig Tiny = new(VocabSize: GptConfig.Gpt2VocabSize, ContextLength: 64, Layers: 1, Hidden: 32, Heads: 2);

    private static GptModel TinyModel()
    {
        manual_seed(31);
        var m = new GptModel(Tiny);
        m.eval();
        return m;
    }

    private const string Text = "The cat sat on the mat. The dog ran to the park and back again. " +
                                "Once upon a time there was a small model that read a short text many times. ";

    [Fact]
    public void EvalPrintsLossAndPerplexityThatAgreeWithADirectComputation()
    {
        using var dir = new TempDir();
        using var model = TinyModel();
        string weights = Path.Combine(dir.Path, "m", "model.safetensors");
        HuggingFaceGpt2.Export(model, weights, ScalarType.Float32);
        string data = dir.File("data.txt", string.Concat(Enumerable.Repeat(Text, 6)));

        var (code, output, err) = Pstar("eval", "--init-from", weights, "--data", data, "--seq", "16", "--batch", "3", "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(output);
        double loss = json.RootElement.GetProperty("loss").GetDouble();
        double ppl = json.RootElement.GetProperty("perplexity").GetDouble();
        int windows = json.RootElement.GetProperty("windows").GetInt32();
        Assert.Equal(Math.Exp(loss), ppl, 9);

        // Direct: every consecutive 16-token window of the file's tokens (with the end-of-text separator), one at a time.
        var tokens = Gpt2Tokenizer.Instance.Encode(File.ReadAllText(data)).Append(Gpt2Tokenizer.Instance.EndOfText).ToArray();
        double sum = 0;
        int n = 0;
        using (no_grad())
            for (int start = 0; start + 17 <= tokens.Length; start += 16, n++)
            {
                using var scope = NewDisposeScope();
                var x = tensor(tokens[start..(start + 16)].Select(t => (long)t).ToArray(), new long[] { 1, 16 });
                var y = tensor(tokens[(start + 1)..(start + 17)].Select(t => (long)t).ToArray(), new long[] { 16 });
                sum += F.cross_entropy(model.call(x)[0], y).item<float>();
            }
        Assert.Equal(n, windows);
        Assert.Equal(sum / n, loss, 4);

        // The text form shows both figures.
        (code, output, err) = Pstar("eval", "--init-from", weights, "--data", data, "--seq", "16", "--batch", "3");
        Assert.True(code == 0, err);
        Assert.Contains($"loss:       {loss:F6}", output);
        Assert.Contains($"perplexity: {ppl:F4}", output);

        // The same model straight from a training checkpoint gives the same loss.
        string checkpoint = HuggingFaceGpt2Tests.WriteCheckpoint(Path.Combine(dir.Path, "ckpt"), model);
        (code, output, err) = Pstar("eval", "--checkpoint", checkpoint, "--data", data, "--seq", "16", "--batch", "3", "--json");
        Assert.True(code == 0, err);
        using (var fromCheckpoint = JsonDocument.Parse(output))
            Assert.Equal(loss, fromCheckpoint.RootElement.GetProperty("loss").GetDouble());

        // --max-batches limits the windows.
        (code, output, _) = Pstar("eval", "--init-from", weights, "--data", data, "--seq", "16", "--batch", "2", "--max-batches", "1", "--json");
        Assert.Equal(0, code);
        using var limited = JsonDocument.Parse(output);
        Assert.Equal(2, limited.RootElement.GetProperty("windows").GetInt32());
    }

    [Fact]
    public void EvalWithoutConfigJsonNeedsHeads()
    {
        using var dir = new TempDir();
        using var model = TinyModel();
        string weights = Path.Combine(dir.Path, "model.safetensors");
        HuggingFaceGpt2.Export(model, weights, ScalarType.BFloat16);
        File.Delete(Path.Combine(dir.Path, "config.json"));
        string data = dir.File("data.txt", Text);

        var (code, _, err) = Pstar("eval", "--init-from", weights, "--data", data, "--seq", "8");
        Assert.Equal(1, code);
        Assert.Contains("--heads", err);
        (code, var output, err) = Pstar("eval", "--init-from", weights, "--data", data, "--seq", "8", "--heads", "2");
        Assert.True(code == 0, err);
        Assert.Contains("perplexity:", output);

        (code, _, err) = Pstar("eval", "--init-from", Path.Combine(dir.Path, "missing.safetensors"), "--data", data);
        Assert.Equal(1, code);
        Assert.Contains("missing.safetensors' does not exist", err);
    }

    [Fact]
    public void GenerateFromFileAndCheckpointMatchesTheLibrary()
    {
        using var dir = new TempDir();
        using var model = TinyModel();
        string weights = Path.Combine(dir.Path, "model.safetensors");
        HuggingFaceGpt2.Export(model, weights, ScalarType.Float32);
        string checkpoint = HuggingFaceGpt2Tests.WriteCheckpoint(Path.Combine(dir.Path, "run", "step-00000010"), model);

        var options = new SamplingOptions(Temperature: 0.8, TopK: 50, TopP: 0.95, Seed: 3);
        string expected = "Once upon a time" + new TextGenerator(model).Generate(Gpt2Tokenizer.Instance, "Once upon a time", 12, options) + Environment.NewLine;

        string[] sampling = { "--prompt", "Once upon a time", "--max-tokens", "12", "--temperature", "0.8", "--top-k", "50", "--top-p", "0.95", "--seed", "3" };
        var (code, output, err) = Pstar(new[] { "generate", "--init-from", weights }.Concat(sampling).ToArray());
        Assert.True(code == 0, err);
        Assert.Equal(expected, output);

        (code, output, err) = Pstar(new[] { "generate", "--checkpoint", Path.Combine(dir.Path, "run") }.Concat(sampling).ToArray());
        Assert.True(code == 0, err);
        Assert.Equal(expected, output);

        (code, _, err) = Pstar("generate", "--prompt", "hi");
        Assert.Equal(1, code);
        Assert.Contains("exactly one of --init-from", err);
    }

    [Fact]
    public void ExportWritesHfFilesFromTheLatestCheckpoint()
    {
        using var dir = new TempDir();
        using var model = TinyModel();
        HuggingFaceGpt2Tests.WriteCheckpoint(Path.Combine(dir.Path, "run", "step-00000010"), model);
        string output = Path.Combine(dir.Path, "hf", "model.safetensors");

        var (code, text, err) = Pstar("export", Path.Combine(dir.Path, "run"), "--out", output, "--dtype", "bf16");
        Assert.True(code == 0, err);
        Assert.Contains("step-00000010", text);
        Assert.True(File.Exists(Path.Combine(dir.Path, "hf", "config.json")));
        using var reader = PatrickStar.Checkpoints.SafetensorsReader.Open(output);
        Assert.All(reader.Entries, e => Assert.Equal(ScalarType.BFloat16, e.DType));

        (code, _, err) = Pstar("export", Path.Combine(dir.Path, "nowhere"), "--out", output);
        Assert.Equal(1, code);
        Assert.Contains("does not exist", err);
    }
}
