using System.Text.Json.Nodes;

namespace PatrickStar.Checkpoints;

/// <summary>The begin/end-of-text ids of an exported folder's config.json and generation_config.json: the tokenizer's, written beside them.</summary>
public static class HfSpecialTokens
{
    /// <summary>
    /// Sets bos_token_id and eos_token_id in both files to <paramref name="bos"/> and <paramref name="eos"/>; an id the
    /// model's vocabulary (config.json's vocab_size) cannot hold, or none, removes the key instead of naming a wrong token.
    /// </summary>
    public static void Set(string dir, int? bos, int? eos)
    {
        string configPath = Path.Combine(dir, HfFolder.ConfigFile);
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        int vocab = config["vocab_size"]?.GetValue<int>() ?? 0;
        foreach (var path in new[] { configPath, Path.Combine(dir, HfFolder.GenerationConfigFile) })
        {
            var json = path == configPath ? config : JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            foreach (var (key, id) in new[] { ("bos_token_id", bos), ("eos_token_id", eos) })
            {
                if (id is int v && v >= 0 && v < vocab) json[key] = v;
                else json.Remove(key);
            }
            HfFolder.WriteJson(path, json);
        }
    }
}
