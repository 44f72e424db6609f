using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;

namespace PatrickStar.Models.Llama;

/// <summary>HF's LlamaConfig (config.json) read into our sizes, refusing settings this model cannot reproduce.</summary>
public static class LlamaConfigJson
{
    public static LlamaConfig Read(string path)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ModelFileException($"'{path}' is not valid JSON ({e.Message}).", e);
        }
        if (root is not JsonObject o) throw new ModelFileException($"'{path}' must hold a JSON object (HF's LlamaConfig).");
        var problems = new List<string>();

        int? Int(JsonObject obj, string key)
        {
            if (obj[key] is not JsonValue v) return null;
            if (v.TryGetValue(out int i)) return i;
            if (v.TryGetValue(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            problems.Add($"\"{key}\" = {v.ToJsonString()} is not an integer");
            return null;
        }
        double? Real(JsonObject obj, string key) => obj[key] is JsonValue v && v.TryGetValue(out double d) ? d : null;
        string? Str(string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        bool? Bool(string key) => o[key] is JsonValue v && v.TryGetValue(out bool b) ? b : null;
        int Required(string key)
        {
            int? v = Int(o, key);
            if (v is null && o[key] is null) problems.Add($"\"{key}\" is missing");
            return v ?? 0;
        }

        int vocab = Required("vocab_size"), hidden = Required("hidden_size"), intermediate = Required("intermediate_size");
        int layers = Required("num_hidden_layers"), heads = Required("num_attention_heads"), context = Required("max_position_embeddings");
        int kvHeads = Int(o, "num_key_value_heads") ?? heads;
        double eps = Real(o, "rms_norm_eps") ?? 1e-6, theta = Real(o, "rope_theta") ?? 10000;
        bool tie = Bool("tie_word_embeddings") ?? false;
        if (Str("hidden_act") is string act && act != "silu") problems.Add($"\"hidden_act\" = \"{act}\": this model's MLP uses silu only");
        if (Bool("attention_bias") == true) problems.Add("\"attention_bias\" = true: this model's projections have no bias");
        if (Bool("mlp_bias") == true) problems.Add("\"mlp_bias\" = true: this model's MLP has no bias");
        if (Int(o, "head_dim") is int headDim && heads > 0 && headDim != hidden / heads)
            problems.Add($"\"head_dim\" = {headDim}: this model's head size is hidden_size / num_attention_heads = {hidden / heads}");
        RopeScaling? scaling = null;
        if (o["rope_scaling"] is JsonObject rs)
        {
            string? type = rs["rope_type"] is JsonValue tv && tv.TryGetValue(out string? t) ? t
                         : rs["type"] is JsonValue tv2 && tv2.TryGetValue(out string? t2) ? t2 : null;
            if (type != "llama3") problems.Add($"\"rope_scaling\".\"rope_type\" = \"{type}\": only llama3 rope scaling is supported");
            else scaling = new RopeScaling(Real(rs, "factor") ?? 0, Real(rs, "low_freq_factor") ?? 0, Real(rs, "high_freq_factor") ?? 0,
                Int(rs, "original_max_position_embeddings") ?? 0);
        }
        else if (o["rope_scaling"] is JsonNode other) problems.Add($"\"rope_scaling\" = {other.ToJsonString()} is not an object");
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
