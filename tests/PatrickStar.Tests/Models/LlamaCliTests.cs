using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Models;

/// <summary>The LLaMA family through the CLI, in-process: models, estimate, train (both engines), generate, eval, export.</summary>
public class LlamaCliTests
{
    public LlamaCliTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void ModelsListsLlamaPresetsWithTheirExactParameterCounts()
    {
        var (code, output, err) = Pstar("models");
        Assert.True(code == 0, err);
        Assert.Contains("tinyllama-1.1b", output);
        Assert.Contains("1,100,048,384", output);
        Assert.Contains("llama-2-7b", output);
        Assert.Contains("6,738,415,616", output);
        Assert.Contains("llama-tiny", output);
    }

    [Fact]
    public void EstimateCountsALlamasParameters()
    {
        var (code, output, err) = Pstar("estimate", "--model", "llama-2-7b", "--seq", "512", "--json", "--device", "cpu");
        Assert.True(code is 0 or 3, err); // fits or not on this machine: either way the figures are printed
        using var json = JsonDocument.Parse(output);
        Assert.Equal(6_738_415_616, json.RootElement.GetProperty("parameters").GetInt64());
    }

    [Fact]
    public void LlamaTinyTrainsUnderBothEnginesThenGeneratesEvaluatesAndExports()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 150).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));
        foreach (var engine in new[] { "plain", "chunked" })
        {
            var (code, output, err) = Pstar("train", "--model", "llama-tiny", "--engine", engine, "--data", data, "--steps", "2", "--batch", "2",
                "--seq", "32", "--eval-interval", "0", "--plain-output", "--device", "cpu", "--save-dir", Path.Combine(dir.Path, engine));
            Assert.True(code == 0, $"{engine}: {err}");
            Assert.Contains("Done", output);
            Assert.Contains($"{PatrickStar.Models.Llama.LlamaZoo.Find("llama-tiny")!.Config.ParameterCount:N0} parameters", output);
        }
        string checkpoint = Path.Combine(dir.Path, "chunked");

        string[] generate = ["generate", "--checkpoint", checkpoint, "--prompt", "The cat", "--max-tokens", "12", "--temperature", "0", "--device", "cpu"];
        var (gc, cached, gerr) = Pstar(generate);
        Assert.True(gc == 0, gerr);
        var (uc, uncached, uerr) = Pstar([.. generate, "--no-cache"]);
        Assert.True(uc == 0, uerr);
        Assert.Equal(uncached, cached);
        Assert.StartsWith("The cat", cached);

        var (ec, eval, eerr) = Pstar("eval", "--checkpoint", checkpoint, "--data", data, "--seq", "16", "--max-batches", "2", "--json", "--device", "cpu");
        Assert.True(ec == 0, eerr);
        using (var json = JsonDocument.Parse(eval))
            Assert.True(double.IsFinite(json.RootElement.GetProperty("loss").GetDouble()));

        string exported = Path.Combine(dir.Path, "hf", "model.safetensors");
        var (xc, _, xerr) = Pstar("export", checkpoint, "--out", exported);
        Assert.True(xc == 0, xerr);
        using (var reader = SafetensorsReader.Open(exported))
        {
            var names = reader.Entries.Select(e => e.Name).ToHashSet();
            foreach (var n in new[] { "model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight",
                                      "model.layers.1.post_attention_layernorm.weight", "model.norm.weight", "lm_head.weight" })
                Assert.Contains(n, names);
        }
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "hf", "config.json")));
        Assert.Equal("llama", config.RootElement.GetProperty("model_type").GetString());
        Assert.Equal(2, config.RootElement.GetProperty("num_key_value_heads").GetInt32());
    }
}
