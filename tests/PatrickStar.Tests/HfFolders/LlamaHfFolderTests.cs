using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.HfFolders;

/// <summary>LLaMA Hugging Face folders: export in shards, read back with identical logits; unsupported settings refused.</summary>
public class LlamaHfFolderTests
{
    public LlamaHfFolderTests() => TorchRuntime.EnsureLoaded();

    private static readonly LlamaConfig Small = new(VocabSize: 50, ContextLength: 16, Layers: 2, Hidden: 32, Heads: 4, KvHeads: 2, Intermediate: 40,
        RopeTheta: 500000, RmsEps: 1e-6, Scaling: new RopeScaling(8, 1, 4, 8));

    private static float[] Logits(LlamaForCausalLM model)
    {
        using var _ = no_grad();
        using var ids = arange(20, dtype: ScalarType.Int64).remainder(model.Config.VocabSize).reshape(2, 10);
        using var logits = model.call(ids);
        return logits.data<float>().ToArray();
    }

    [Fact]
    public void AShardedFolderReadsBackWithIdenticalLogits()
    {
        using var dir = new TempDir();
        manual_seed(4);
        using var model = new LlamaForCausalLM(Small);
        var files = HuggingFaceLlamaFolder.Export(model, dir.Path, ScalarType.Float32, 8_000); // bytes: a few tensors a shard
        Assert.True(files.Count >= 3, $"{files.Count} shards");
        Assert.True(File.Exists(Path.Combine(dir.Path, HfFolder.IndexFile)));
        Assert.Equal("llama", JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, HfFolder.ConfigFile)))!["model_type"]!.GetValue<string>());
        Assert.True(HuggingFaceLlamaFolder.IsLlamaFolder(dir.Path));

        using var back = HuggingFaceLlamaFolder.Load(dir.Path);
        Assert.Equal(model.Config, back.Config);
        Assert.Equal(Logits(model), Logits(back));
    }

    [Theory]
    [InlineData("attention_bias", "true")]
    [InlineData("hidden_act", "\"gelu\"")]
    [InlineData("mlp_bias", "true")]
    public void AnUnsupportedSettingIsRefusedNamingFileAndKey(string key, string value)
    {
        using var dir = new TempDir();
        manual_seed(4);
        using var model = new LlamaForCausalLM(Small);
        HuggingFaceLlamaFolder.Export(model, dir.Path, ScalarType.Float32, 5_000_000_000);
        string configPath = Path.Combine(dir.Path, HfFolder.ConfigFile);
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json[key] = JsonNode.Parse(value);
        File.WriteAllText(configPath, json.ToJsonString());

        var e = Assert.Throws<ModelFileException>(() => HuggingFaceLlamaFolder.Load(dir.Path));
        Assert.Contains(configPath, e.Message);
        Assert.Contains($"\"{key}\"", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
