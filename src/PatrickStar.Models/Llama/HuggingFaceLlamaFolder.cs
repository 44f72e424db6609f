using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using static TorchSharp.torch;

namespace PatrickStar.Models.Llama;

/// <summary>LLaMA's part of an HF folder: HF's LlamaConfig and LlamaForCausalLM's tensor names (ours already are HF's).</summary>
public sealed class LlamaHfFamily : IHfModelFamily<LlamaConfig>
{
    public static readonly LlamaHfFamily Instance = new();

    public string ModelType => "llama";

    public LlamaConfig ReadConfig(string configJsonPath) => LlamaConfigJson.Read(configJsonPath);

    public JsonObject ConfigJson(LlamaConfig config, ScalarType dtype) =>
        (JsonObject)JsonNode.Parse(CausalLmCheckpoints.LlamaConfigJson(config, dtype))!;

    public JsonObject GenerationConfigJson(LlamaConfig config) => new() { ["_from_model_config"] = true };

    /// <summary>Checks every tensor's name and shape against a model of <paramref name="config"/> before anything is written.</summary>
    public IReadOnlyList<TensorSource> HfTensors(LlamaConfig config, IEnumerable<TensorSource> ours, string target)
    {
        var given = ours.ToList();
        var byName = given.ToDictionary(t => t.Name);
        var problems = new List<string>();
        var expected = ExpectedShapes(config);
        foreach (var (name, shape) in expected)
        {
            if (!byName.TryGetValue(name, out var t)) problems.Add($"'{name}' is missing");
            else if (!t.Shape.SequenceEqual(shape)) problems.Add($"'{name}' has shape [{string.Join(", ", t.Shape)}], the config needs [{string.Join(", ", shape)}]");
        }
        foreach (var t in given)
            if (!expected.ContainsKey(t.Name)) problems.Add($"'{t.Name}' is not a LlamaForCausalLM tensor");
        if (problems.Count > 0)
            throw new ModelFileException($"cannot write '{target}': " + string.Join("; ", problems) + ".");
        return given;
    }

    /// <summary>The parameter shapes of LlamaForCausalLM for <paramref name="config"/>, by HF name (a meta-free build).</summary>
    private static Dictionary<string, long[]> ExpectedShapes(LlamaConfig c)
    {
        long h = c.Hidden, kv = (long)c.KvHeads * c.HeadSize;
        var shapes = new Dictionary<string, long[]> { ["model.embed_tokens.weight"] = [c.VocabSize, h], ["model.norm.weight"] = [h] };
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"model.layers.{i}.";
            shapes[p + "self_attn.q_proj.weight"] = [h, h];
            shapes[p + "self_attn.k_proj.weight"] = [kv, h];
            shapes[p + "self_attn.v_proj.weight"] = [kv, h];
            shapes[p + "self_attn.o_proj.weight"] = [h, h];
            shapes[p + "mlp.gate_proj.weight"] = [c.Intermediate, h];
            shapes[p + "mlp.up_proj.weight"] = [c.Intermediate, h];
            shapes[p + "mlp.down_proj.weight"] = [h, c.Intermediate];
            shapes[p + "input_layernorm.weight"] = [h];
            shapes[p + "post_attention_layernorm.weight"] = [h];
        }
        if (!c.TieEmbeddings) shapes["lm_head.weight"] = [c.VocabSize, h];
        return shapes;
    }
}

/// <summary>Loading and writing LLaMA Hugging Face folders.</summary>
public static class HuggingFaceLlamaFolder
{
    /// <summary>True when <paramref name="dir"/>'s config.json says model_type "llama".</summary>
    public static bool IsLlamaFolder(string dir)
    {
        string path = Path.Combine(dir, HfFolder.ConfigFile);
        if (!File.Exists(path)) return false;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path))?["model_type"]?.GetValue<string>() == "llama";
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return false; // HfFolder.ReadConfig reports it in one line
        }
    }

    /// <summary>
    /// True when <paramref name="path"/> is a LLaMA folder, or a safetensors file of LlamaForCausalLM's tensors (our
    /// export's layout: its config.json beside it, as GPT-2 files have theirs).
    /// </summary>
    public static bool IsLlamaSource(string path)
    {
        if (Directory.Exists(path)) return IsLlamaFolder(path);
        if (!File.Exists(path)) return false;
        if (IsLlamaFolder(FolderOf(path))) return true;
        try
        {
            using var file = SafetensorsReader.Open(path);
            return file.Entries.Any(e => e.Name == EmbedName); // a LLaMA without its config.json: ReadConfig says what is missing
        }
        catch (ModelFileException)
        {
            return false; // not readable as safetensors: the GPT-2 path reports it
        }
    }

    private const string EmbedName = "model.embed_tokens.weight";

    private static string FolderOf(string file) => Path.GetDirectoryName(Path.GetFullPath(file)) ?? ".";

    /// <summary>The config of a LLaMA folder, or of a LLaMA safetensors file from the config.json beside it.</summary>
    public static LlamaConfig ReadConfig(string path)
    {
        if (Directory.Exists(path)) return HfFolder.ReadConfig(path, LlamaHfFamily.Instance);
        string beside = Path.Combine(FolderOf(path), HfFolder.ConfigFile);
        if (!File.Exists(beside))
            throw new ModelFileException($"'{path}' holds LLaMA weights but there is no {HfFolder.ConfigFile} beside it; a LLaMA's shape (heads, rope_theta) " +
                                         $"is not in its tensors: put the model's HF {HfFolder.ConfigFile} in '{FolderOf(path)}'.");
        if (!IsLlamaFolder(FolderOf(path)))
            throw new ModelFileException($"'{path}' holds LLaMA weights but '{beside}' does not say \"model_type\": \"llama\"; put the LLaMA's own {HfFolder.ConfigFile} beside it.");
        return LlamaConfigJson.Read(beside);
    }

    /// <summary>Builds a LlamaForCausalLM (fp32, CPU) from a folder (or file) and its config.json and loads its weights tensor by tensor.</summary>
    public static LlamaForCausalLM Load(string path)
    {
        var model = new LlamaForCausalLM(ReadConfig(path));
        try
        {
            Import(model, path);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads a folder's (or a file's) weights into <paramref name="model"/>, whose config must be theirs.</summary>
    public static void Import(LlamaForCausalLM model, string path)
    {
        var readers = Readers(model, path, out var source);
        using var _ = source;
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters()) readers[name](p);
    }

    /// <summary>
    /// The reader of each parameter's tensor (a tied head is one parameter: read once), checked against the model's config,
    /// names and shapes before anything is read; the model may hold placeholders. <paramref name="source"/> stays open until disposed.
    /// </summary>
    public static IReadOnlyDictionary<string, Action<Tensor>> Readers(LlamaForCausalLM model, string path, out IDisposable source)
    {
        var config = ReadConfig(path);
        if (config != model.Config)
            throw new ModelFileException($"the config.json of '{path}' describes {config}, not the run's model {model.Config}; " +
                                         "drop the size flags that differ from the weights'.");
        string where;
        IReadOnlyList<SafetensorsEntry> entries;
        Action<string, Tensor> readInto;
        if (Directory.Exists(path))
        {
            var weights = HfFolder.OpenWeights(path);
            (source, where, entries, readInto) = (weights, $"folder '{path}'", weights.Entries, weights.ReadInto);
        }
        else
        {
            var file = SafetensorsReader.Open(path);
            (source, where, entries, readInto) = (file, $"'{path}'", file.Entries, file.ReadInto);
        }
        try
        {
            var byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
            var readers = new Dictionary<string, Action<Tensor>>(StringComparer.Ordinal);
            foreach (var (name, p) in model.named_parameters())
            {
                var entry = byName.GetValueOrDefault(name)
                            ?? throw new ModelFileException($"{where} has no tensor '{name}', which its config.json's model needs.");
                if (!entry.Shape.SequenceEqual(p.shape))
                    throw new ModelFileException($"{where}: '{name}' has shape [{string.Join(", ", entry.Shape)}], its config.json needs [{string.Join(", ", p.shape)}].");
                readers[name] = t => readInto(name, t);
            }
            return readers;
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Writes a model's weights as an HF folder (see <see cref="HfFolder.Write{TConfig}"/>).</summary>
    public static IReadOnlyList<string> Export(LlamaForCausalLM model, string dir, ScalarType dtype, long maxShardBytes) =>
        HfFolder.Write(LlamaHfFamily.Instance, model.Config, model.named_parameters()
            .Select(p => new TensorSource(p.name, p.parameter.dtype, p.parameter.shape, () => p.parameter.detach())), dir, dtype, maxShardBytes);
}
