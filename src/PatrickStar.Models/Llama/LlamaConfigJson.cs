using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;

namespace PatrickStar.Models.Llama;

/// <summary>HF's LlamaConfig (config.json) read into our sizes, refusing settings this model cannot reproduce.</summary>
public static class LlamaConfigJson
{
    public static LlamaConfig Read(string path)
    {
        var r = HfConfigReader.Open(path, "HF's LlamaConfig");
        var problems = r.Problems;

        int vocab = r.Required("vocab_size"), hidden = r.Required("hidden_size"), intermediate = r.Required("intermediate_size");
        int layers = r.Required("num_hidden_layers"), heads = r.Required("num_attention_heads"), context = r.Required("max_position_embeddings");
        int kvHeads = r.Int("num_key_value_heads") ?? heads;
        double eps = r.Real("rms_norm_eps") ?? 1e-6, theta = r.Real("rope_theta") ?? 10000;
        bool tie = r.Bool("tie_word_embeddings") ?? false;
        if (r.Str("hidden_act") is string act && act != "silu") problems.Add($"\"hidden_act\" = \"{act}\": this model's MLP uses silu only");
        if (r.Bool("attention_bias") == true) problems.Add("\"attention_bias\" = true: this model's projections have no bias");
        if (r.Bool("mlp_bias") == true) problems.Add("\"mlp_bias\" = true: this model's MLP has no bias");
        if (r.Int("head_dim") is int headDim && heads > 0 && headDim != hidden / heads)
            problems.Add($"\"head_dim\" = {headDim}: this model's head size is hidden_size / num_attention_heads = {hidden / heads}");
        RopeScaling? scaling = null;
        if (r.Root["rope_scaling"] is JsonObject rs)
        {
            string? type = r.Str("rope_type", rs) ?? r.Str("type", rs);
            if (type != "llama3") problems.Add($"\"rope_scaling\".\"rope_type\" = \"{type}\": only llama3 rope scaling is supported");
            else scaling = new RopeScaling(r.Real("factor", rs) ?? 0, r.Real("low_freq_factor", rs) ?? 0, r.Real("high_freq_factor", rs) ?? 0,
                r.Int("original_max_position_embeddings", rs) ?? 0);
        }
        else if (r.Root["rope_scaling"] is JsonNode other) problems.Add($"\"rope_scaling\" = {other.ToJsonString()} is not an object");
        if (problems.Count > 0)
            throw new ModelFileException($"'{path}' cannot configure this LLaMA: " + string.Join("; ", problems) + ".");
        var config = new LlamaConfig(vocab, context, layers, hidden, heads, kvHeads, intermediate, theta, eps, tie, scaling);
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ModelFileException($"'{path}': {e.Message}", e);
        }
        return config;
    }
}
