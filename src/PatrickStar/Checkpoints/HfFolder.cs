using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace PatrickStar.Checkpoints;

/// <summary>
/// What a model family (GPT-2, LLaMA, ...) supplies so that <see cref="HfFolder"/> can read and write its Hugging Face
/// folders: the config.json mapping and the tensor names. The folder mechanics (shards, index, atomic files) stay here.
/// </summary>
public interface IHfModelFamily<TConfig>
{
    /// <summary>config.json's "model_type" (e.g. "gpt2", "llama").</summary>
    string ModelType { get; }

    /// <summary>The sizes in a config.json, refusing settings the model cannot reproduce (message names the file and key).</summary>
    TConfig ReadConfig(string configJsonPath);

    JsonObject ConfigJson(TConfig config, ScalarType dtype);

    JsonObject GenerationConfigJson(TConfig config);

    /// <summary>
    /// The tensors to store, named as HF names them, in file order; every mismatch with <paramref name="config"/> is
    /// reported in one exception naming <paramref name="target"/> before anything is written.
    /// </summary>
    IReadOnlyList<TensorSource> HfTensors(TConfig config, IEnumerable<TensorSource> ours, string target);
}

/// <summary>
/// A Hugging Face model folder: config.json, generation_config.json, model.safetensors or model-0000K-of-0000N.safetensors
/// shards with model.safetensors.index.json, and tokenizer files. Weights are read and written one tensor at a time.
/// </summary>
public static class HfFolder
{
    public const string ConfigFile = "config.json";
    public const string GenerationConfigFile = "generation_config.json";
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    public const string DefaultMaxShardSize = "5GB";

    private static readonly Regex ShardName = new(@"^model-\d{5}-of-\d{5}\.safetensors$", RegexOptions.CultureInvariant);

    /// <summary>True when <paramref name="path"/> is a folder (then it must be an HF model folder), false for a file.</summary>
    public static bool IsFolder(string path) => Directory.Exists(path);

    /// <summary>Reads and checks config.json's model_type, then lets the family map it.</summary>
    public static TConfig ReadConfig<TConfig>(string dir, IHfModelFamily<TConfig> family)
    {
        string path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path))
            throw new ModelFileException($"folder '{dir}' has no {ConfigFile}; give a Hugging Face model folder (config.json with model.safetensors or its shards).");
        string? type;
        try
        {
            type = JsonNode.Parse(File.ReadAllText(path))?["model_type"]?.GetValue<string>();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new ModelFileException($"'{path}' is not valid JSON with a string \"model_type\" ({e.Message}).", e);
        }
        if (type is not null && type != family.ModelType)
            throw new ModelFileException($"'{path}' describes a \"{type}\" model, not {family.ModelType}; give a {family.ModelType} folder.");
        return family.ReadConfig(path);
    }

    /// <summary>Opens the folder's weights: the index's shards, or the single model.safetensors.</summary>
    public static HfWeights OpenWeights(string dir) => HfWeights.Open(dir);

    /// <summary>
    /// Writes <paramref name="ours"/> as an HF folder in <paramref name="dtype"/>: shards of at most
    /// <paramref name="maxShardBytes"/> (a tensor larger than that gets a shard of its own) with their index, or one
    /// model.safetensors when all fit in one; config.json and generation_config.json. Shards of an earlier export
    /// that this one does not use are removed afterwards. Returns the weight files written.
    /// </summary>
    public static IReadOnlyList<string> Write<TConfig>(IHfModelFamily<TConfig> family, TConfig config, IEnumerable<TensorSource> ours,
        string dir, ScalarType dtype, long maxShardBytes)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"export dtype {dtype} is not supported; use fp32, bf16 or fp16.");
        if (maxShardBytes <= 0) throw new ArgumentException($"--max-shard-size must be positive, not {maxShardBytes} bytes.");
        var tensors = family.HfTensors(config, ours, dir);
        var shards = PlanShards(tensors, dtype, maxShardBytes);
        Directory.CreateDirectory(dir);
        var metadata = new Dictionary<string, string> { ["format"] = "pt" }; // transformers refuses files without format=pt
        var names = new List<string>();
        var weightMap = new JsonObject();
        for (int i = 0; i < shards.Count; i++)
        {
            string name = shards.Count == 1 ? SingleFile : $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsWriter.Save(Path.Combine(dir, name), shards[i], dtype, metadata);
            foreach (var t in shards[i]) weightMap[t.Name] = name;
            names.Add(name);
        }
        long total = tensors.Sum(t => Bytes(t, dtype));
        string index = Path.Combine(dir, IndexFile);
        if (shards.Count > 1)
            WriteJson(index, new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap });
        WriteJson(Path.Combine(dir, ConfigFile), family.ConfigJson(config, dtype));
        WriteJson(Path.Combine(dir, GenerationConfigFile), family.GenerationConfigJson(config));
        foreach (var stale in Directory.EnumerateFiles(dir).Select(Path.GetFileName))
            if ((ShardName.IsMatch(stale!) || stale == SingleFile) && !names.Contains(stale!)) File.Delete(Path.Combine(dir, stale!));
        if (shards.Count == 1 && File.Exists(index)) File.Delete(index);
        return names;
    }

    private static long Bytes(TensorSource t, ScalarType dtype) => t.Shape.Aggregate(1L, (a, b) => a * b) * PatrickStar.Runtime.TensorMemory.ElementSize(dtype);

    private static List<List<TensorSource>> PlanShards(IReadOnlyList<TensorSource> tensors, ScalarType dtype, long maxShardBytes)
    {
        var shards = new List<List<TensorSource>> { new() };
        long size = 0;
        foreach (var t in tensors)
        {
            long bytes = Bytes(t, dtype);
            if (size + bytes > maxShardBytes && shards[^1].Count > 0)
            {
                shards.Add(new());
                size = 0;
            }
            shards[^1].Add(t);
            size += bytes;
        }
        return shards;
    }

    /// <summary>Pretty JSON written to a temporary file and renamed into place.</summary>
    public static void WriteJson(string path, JsonNode json)
    {
        string full = Path.GetFullPath(path);
        string temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(System.Text.Encoding.UTF8.GetBytes(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
