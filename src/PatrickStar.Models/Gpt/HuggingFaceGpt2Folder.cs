using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using static TorchSharp.torch;

namespace PatrickStar.Models.Gpt;

/// <summary>GPT-2's part of an HF folder: GPT2Config and GPT2LMHeadModel's tensor names (ours already are HF's).</summary>
public sealed class Gpt2HfFamily : IHfModelFamily<GptConfig>
{
    public static readonly Gpt2HfFamily Instance = new();

    public string ModelType => "gpt2";

    public GptConfig ReadConfig(string configJsonPath) => HuggingFaceGpt2.ReadConfigJson(configJsonPath);

    public JsonObject ConfigJson(GptConfig config, ScalarType dtype) => HuggingFaceGpt2.ConfigJson(config, dtype);

    // GPT-2 documents start and end with <|endoftext|>; a model with a smaller vocabulary has no such token.
    public JsonObject GenerationConfigJson(GptConfig config) => config.VocabSize > EndOfText
        ? new JsonObject { ["_from_model_config"] = true, ["bos_token_id"] = EndOfText, ["eos_token_id"] = EndOfText }
        : new JsonObject { ["_from_model_config"] = true };

    public IReadOnlyList<TensorSource> HfTensors(GptConfig config, IEnumerable<TensorSource> ours, string target) =>
        HuggingFaceGpt2.CheckedTensors(config, ours, target);

    private const int EndOfText = 50256;
}

/// <summary>Loading and writing GPT-2 Hugging Face folders.</summary>
public static class HuggingFaceGpt2Folder
{
    /// <summary>Builds a GptModel (fp32, CPU) from a folder's config.json and loads its weights tensor by tensor.</summary>
    public static GptModel Load(string dir, int? heads = null)
    {
        var config = HfFolder.ReadConfig(dir, Gpt2HfFamily.Instance);
        if (heads is int h && h != config.Heads)
            throw new ModelFileException($"--heads {h} disagrees with \"n_head\" = {config.Heads} in '{Path.Combine(dir, HfFolder.ConfigFile)}'; drop --heads or fix the config.");
        using var weights = HfFolder.OpenWeights(dir);
        var model = new GptModel(config);
        try
        {
            HuggingFaceGpt2.Import(model, weights);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Writes a model's weights as an HF folder (see <see cref="HfFolder.Write{TConfig}"/>).</summary>
    public static IReadOnlyList<string> Export(GptModel model, string dir, ScalarType dtype, long maxShardBytes) =>
        HfFolder.Write(Gpt2HfFamily.Instance, model.Config, model.named_parameters()
            .Select(p => new TensorSource(p.name, p.parameter.dtype, p.parameter.shape, () => p.parameter.detach())), dir, dtype, maxShardBytes);

    /// <summary>The sizes in a folder's config.json.</summary>
    public static GptConfig ReadConfig(string dir) => HfFolder.ReadConfig(dir, Gpt2HfFamily.Instance);
}
