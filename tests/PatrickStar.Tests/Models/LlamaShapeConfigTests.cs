using PatrickStar.Config;
using PatrickStar.Models;
using PatrickStar.Models.Llama;
using Xunit;

namespace PatrickStar.Tests.Models;

/// <summary>The run config describes any LLaMA shape (model.family and the LLaMA keys), and keeps it through its JSON.</summary>
public class LlamaShapeConfigTests
{
    private static readonly LlamaConfig Odd = new(1000, 64, 3, 48, 6, 3, 100, RopeTheta: 12345, RmsEps: 1e-6, TieEmbeddings: true,
        Scaling: new RopeScaling(4, 1, 4, 32));

    private static TrainingConfig Described(LlamaConfig c)
    {
        var config = new TrainingConfig { Model = { Preset = null } };
        ModelFamilies.Describe(config.Model, c);
        return config;
    }

    [Fact]
    public void AnyShapeIsDescribedAndSurvivesTheConfigsJson()
    {
        var config = Described(Odd);
        Assert.Equal(Odd, ModelFamilies.Resolve(config.Model).Llama);
        var back = ConfigLoader.Parse(ConfigLoader.ToJson(config), "test");
        Assert.Equal(Odd, ModelFamilies.Resolve(back.Model).Llama);
    }

    [Fact]
    public void TheKeysOverrideALlamaPreset()
    {
        var m = new ModelSection { Preset = "llama-tiny", Intermediate = 100, KvHeads = 1, RopeTheta = 5e5, TieEmbeddings = true };
        var tiny = LlamaZoo.Find("llama-tiny")!.Config;
        Assert.Equal(tiny with { Intermediate = 100, KvHeads = 1, RopeTheta = 5e5, TieEmbeddings = true }, ModelFamilies.Resolve(m).Llama);
    }

    [Fact]
    public void AFamilyWithoutAPresetTakesTheFamilyDefaults()
    {
        var m = new ModelSection { Preset = null, Family = "llama", VocabSize = 1000, ContextLength = 64, Layers = 3, Hidden = 96, Heads = 6 };
        Assert.Equal(new LlamaConfig(1000, 64, 3, 96, 6, 6, 256), ModelFamilies.Resolve(m).Llama);
        Assert.Equal(11008, ModelFamilies.DefaultIntermediate(4096)); // Llama-2-7B's width
    }

    [Fact]
    public void AGptConfigDoesNotWriteTheLlamaKeys()
    {
        string json = ConfigLoader.ToJson(new TrainingConfig());
        foreach (var key in new[] { "family", "num_key_value_heads", "intermediate_size", "rope_theta", "rms_norm_eps", "tie_word_embeddings", "rope_scaling" })
            Assert.DoesNotContain($"\"{key}\"", json);
    }

    [Theory]
    [InlineData("gpt", "model.intermediate_size")]
    [InlineData("missing", "model.n_layer")]
    [InlineData("scaling", "model.rope_scaling.high_freq_factor")]
    [InlineData("family", "model.family")]
    [InlineData("shape", "num_key_value_heads = 4")]
    public void ABadShapeIsRefusedInOneLineNamingTheKey(string which, string named)
    {
        var m = which switch
        {
            "gpt" => new ModelSection { Preset = "gpt2-mini", Intermediate = 100 },
            "missing" => new ModelSection { Preset = null, Family = "llama", VocabSize = 1000, ContextLength = 64, Hidden = 96, Heads = 6 },
            "scaling" => new ModelSection { Preset = "llama-tiny", RopeScalingFactor = 8, RopeScalingLowFreqFactor = 1, RopeScalingOriginalMaxPositions = 64 },
            "family" => new ModelSection { Preset = null, Family = "mamba" },
            _ => new ModelSection { Preset = "llama-tiny", KvHeads = 4, Heads = 6, Hidden = 48 },
        };
        var e = Assert.Throws<ConfigException>(() => ModelFamilies.Resolve(m));
        Assert.Contains(named, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
