using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Models.Generation;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using static TorchSharp.torch;

namespace PatrickStar.Models;

/// <summary>
/// Models of either family from training checkpoints. A LLaMA checkpoint is recognised by its parameter names; its
/// shape comes from the training config the checkpoint keeps (rope_theta and the like are not in the tensors).
/// </summary>
public static class CausalLmCheckpoints
{
    public static bool IsLlama(CheckpointParameters checkpoint) => checkpoint.Contains("model.embed_tokens.weight");

    public static LlamaConfig LlamaConfigOf(CheckpointParameters checkpoint)
    {
        string json = TrainerStateFile.TryReadConfig(checkpoint.Directory)
                      ?? throw new ModelFileException($"checkpoint '{checkpoint.Directory}' holds LLaMA weights but no readable training config in {TrainerStateFile.Name}; it cannot be loaded.");
        var choice = ModelFamilies.Resolve(ConfigLoader.Parse(json, Path.Combine(checkpoint.Directory, TrainerStateFile.Name)).Model);
        return choice.Llama ?? throw new ModelFileException($"checkpoint '{checkpoint.Directory}' holds LLaMA weights but its config names a GPT model.");
    }

    /// <summary>The tokenizer the checkpoint's run was configured with (data.tokenizer: a name or a folder); null when it used the default.</summary>
    public static string? RecordedTokenizer(string checkpointPath)
    {
        string dir;
        using (var checkpoint = CheckpointParameters.Open(checkpointPath)) dir = checkpoint.Directory;
        return TrainerStateFile.TryReadConfig(dir) is string json
            ? ConfigLoader.Parse(json, Path.Combine(dir, TrainerStateFile.Name)).Data.Tokenizer
            : null;
    }

    /// <summary>A model (fp32, CPU) of the checkpoint's family holding its master weights.</summary>
    public static ICausalLm LoadModel(string checkpointPath)
    {
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        if (!IsLlama(checkpoint)) return GptCheckpoints.LoadModel(checkpointPath);
        var model = new LlamaForCausalLM(LlamaConfigOf(checkpoint));
        try
        {
            using var _ = no_grad();
            foreach (var (name, p) in model.named_parameters())
            {
                if (!checkpoint.Shape(name).SequenceEqual(p.shape))
                    throw new ModelFileException($"checkpoint '{checkpoint.Directory}': '{name}' has shape [{string.Join(", ", checkpoint.Shape(name))}], " +
                                                 $"the config's model needs [{string.Join(", ", p.shape)}].");
                checkpoint.ReadInto(name, p);
            }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Exports a checkpoint as HF weights: GPT-2's layout for a GPT, LlamaForCausalLM's names (ours) plus an HF LlamaConfig
    /// config.json for a LLaMA. Returns the checkpoint directory used.
    /// </summary>
    public static string Export(string checkpointPath, string outPath, ScalarType dtype)
    {
        using (var probe = CheckpointParameters.Open(checkpointPath))
            if (!IsLlama(probe)) return GptCheckpoints.Export(checkpointPath, outPath, dtype);
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        var config = LlamaConfigOf(checkpoint);
        SafetensorsWriter.Save(outPath, checkpoint.Sources(), dtype, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(HuggingFaceGpt2.ConfigPathBeside(outPath), LlamaConfigJson(config, dtype));
        return checkpoint.Directory;
    }

    /// <summary>Exports a checkpoint of either family as an HF folder (sharded at <paramref name="maxShardBytes"/>); returns the checkpoint directory used.</summary>
    public static string ExportFolder(string checkpointPath, string dir, ScalarType dtype, long maxShardBytes)
    {
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        if (!IsLlama(checkpoint)) return GptCheckpoints.ExportFolder(checkpointPath, dir, dtype, maxShardBytes);
        HfFolder.Write(LlamaHfFamily.Instance, LlamaConfigOf(checkpoint), checkpoint.Sources(), dir, dtype, maxShardBytes);
        return checkpoint.Directory;
    }

    /// <summary>A model (fp32, CPU) from an HF folder or safetensors file of either family (by its config.json's model_type, or its tensor names).</summary>
    public static ICausalLm LoadHf(string path, int? heads) =>
        HuggingFaceLlamaFolder.IsLlamaSource(path) ? HuggingFaceLlamaFolder.Load(path) : HuggingFaceGpt2.Load(path, heads);

    /// <summary>HF's LlamaConfig for our sizes.</summary>
    public static string LlamaConfigJson(LlamaConfig c, ScalarType dtype)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = c.VocabSize,
            ["max_position_embeddings"] = c.ContextLength,
            ["hidden_size"] = c.Hidden,
            ["intermediate_size"] = c.Intermediate,
            ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads,
            ["num_key_value_heads"] = c.KvHeads,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = c.RmsEps,
            ["rope_theta"] = c.RopeTheta,
            ["rope_scaling"] = c.Scaling is { } s
                ? new JsonObject
                {
                    ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor,
                    ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositions,
                }
                : null,
            ["tie_word_embeddings"] = c.TieEmbeddings,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["torch_dtype"] = dtype switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" },
        };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
