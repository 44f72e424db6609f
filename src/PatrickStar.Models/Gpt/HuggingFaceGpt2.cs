using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using PatrickStar.Checkpoints;
using static TorchSharp.torch;

namespace PatrickStar.Models.Gpt;

/// <summary>
/// Interchange with Hugging Face's GPT-2 (GPT2LMHeadModel): safetensors weights plus config.json
/// (GPT2Config). Our parameter names and layouts already are HF's (Conv1D weights [in, out]), so the
/// mapping only deals with what differs between HF's own files: names with or without the
/// "transformer." prefix, an optional lm_head.weight (tied to wte), and the attention-mask buffers
/// (attn.bias, attn.masked_bias) that older files carry.
/// </summary>
public static class HuggingFaceGpt2
{
    public const string Prefix = "transformer.";
    public const string LmHead = "lm_head.weight";
    public const string ConfigFileName = "config.json";

    // Our GELU is the tanh approximation (F.gelu(..., tanh) in Mlp), which HF calls "gelu_new".
    public const string Activation = "gelu_new";
    private static readonly string[] EquivalentActivations = { "gelu_new", "gelu_pytorch_tanh" };

    // GptLayerNorm's default epsilon, the value GPT2Config uses too.
    public const double LayerNormEpsilon = 1e-5;

    /// <summary>Our parameter names and shapes for a config, in the order GptModel.named_parameters() lists them.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> ParameterShapes(GptConfig c)
    {
        long h = c.Hidden;
        var list = new List<(string, long[])>
        {
            (Prefix + "wte.weight", new[] { (long)c.VocabSize, h }),
            (Prefix + "wpe.weight", new[] { (long)c.ContextLength, h }),
        };
        for (int i = 0; i < c.Layers; i++)
        {
            string b = $"{Prefix}h.{i}.";
            list.Add((b + "ln_1.weight", new[] { h }));
            list.Add((b + "ln_1.bias", new[] { h }));
            list.Add((b + "attn.c_attn.weight", new[] { h, 3 * h }));
            list.Add((b + "attn.c_attn.bias", new[] { 3 * h }));
            list.Add((b + "attn.c_proj.weight", new[] { h, h }));
            list.Add((b + "attn.c_proj.bias", new[] { h }));
            list.Add((b + "ln_2.weight", new[] { h }));
            list.Add((b + "ln_2.bias", new[] { h }));
            list.Add((b + "mlp.c_fc.weight", new[] { h, 4 * h }));
            list.Add((b + "mlp.c_fc.bias", new[] { 4 * h }));
            list.Add((b + "mlp.c_proj.weight", new[] { 4 * h, h }));
            list.Add((b + "mlp.c_proj.bias", new[] { h }));
        }
        list.Add((Prefix + "ln_f.weight", new[] { h }));
        list.Add((Prefix + "ln_f.bias", new[] { h }));
        return list;
    }

    /// <summary>HF's causal-mask buffers: not weights, recomputed by every implementation.</summary>
    public static bool IsIgnoredBuffer(string name) => name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal);

    /// <summary>Our name for an HF tensor name: the transformer. prefix added when the file omits it.</summary>
    public static string OurName(string hfName) => hfName.StartsWith(Prefix, StringComparison.Ordinal) || hfName == LmHead ? hfName : Prefix + hfName;

    private static string Dims(long[] shape) => "[" + string.Join(", ", shape) + "]";

    // ---------------------------------------------------------------- import

    /// <summary>One tensor offered for import: its name as stored, shape, dtype and how to read it.</summary>
    private sealed record Offered(string StoredName, long[] Shape, ScalarType DType, Action<Tensor> ReadInto, Func<Tensor> Read);

    /// <summary>
    /// Loads HF GPT-2 weights from a safetensors file into <paramref name="model"/>, converting to the
    /// model's dtype. All mismatches (missing, unexpected, wrong shapes) are reported together in one
    /// exception before any weight is changed.
    /// </summary>
    public static void Import(GptModel model, string safetensorsPath)
    {
        if (HfFolder.IsFolder(safetensorsPath))
        {
            using var weights = HfFolder.OpenWeights(safetensorsPath);
            Import(model, weights);
            return;
        }
        using var file = SafetensorsReader.Open(safetensorsPath);
        Import(model, file);
    }

    /// <summary>Loads the weights of an HF folder (one file or shards), one tensor at a time.</summary>
    public static void Import(GptModel model, HfWeights weights) => ImportCore(model, $"folder '{weights.Directory}'", Offers(weights));

    public static void Import(GptModel model, SafetensorsReader file) => ImportCore(model, $"'{file.Path}'", Offers(file));

    /// <summary>Loads the fp32 master weights of a training checkpoint into <paramref name="model"/>.</summary>
    public static void Import(GptModel model, CheckpointParameters checkpoint) =>
        ImportCore(model, $"checkpoint '{checkpoint.Directory}'", checkpoint.Names.Select(n =>
            new Offered(n, checkpoint.Shape(n), ScalarType.Float32, t => checkpoint.ReadInto(n, t), () => checkpoint.Read(n))));

    /// <summary>
    /// The reader of each parameter's tensor in a safetensors file or HF folder, matched and checked against the model
    /// (which may hold placeholders: only names and shapes are used) before anything is read. <paramref name="source"/>
    /// stays open until disposed; the readers need it.
    /// </summary>
    public static IReadOnlyDictionary<string, Action<Tensor>> Readers(GptModel model, string path, out IDisposable source)
    {
        if (HfFolder.IsFolder(path))
        {
            var weights = HfFolder.OpenWeights(path);
            source = weights;
            return Checked(() => Match(model, $"folder '{weights.Directory}'", Offers(weights)), weights);
        }
        var file = SafetensorsReader.Open(path);
        source = file;
        return Checked(() => Match(model, $"'{file.Path}'", Offers(file)), file);
    }

    private static IReadOnlyDictionary<string, Action<Tensor>> Checked(Func<Dictionary<string, Offered>> match, IDisposable source)
    {
        try
        {
            return match().ToDictionary(kv => kv.Key, kv => kv.Value.ReadInto, StringComparer.Ordinal);
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    private static IEnumerable<Offered> Offers(HfWeights weights) => weights.Entries.Select(e =>
        new Offered(e.Name, e.Shape, e.DType, t => weights.ReadInto(e.Name, t), () => weights.Read(e.Name)));

    private static IEnumerable<Offered> Offers(SafetensorsReader file) => file.Entries.Select(e =>
        new Offered(e.Name, e.Shape, e.DType, t => file.ReadInto(e.Name, t), () => file.Read(e.Name)));

    private static void ImportCore(GptModel model, string source, IEnumerable<Offered> offered)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        foreach (var (name, o) in Match(model, source, offered)) o.ReadInto(parameters[name]);
    }

    /// <summary>The offered tensor of each parameter; every mismatch (missing, unexpected, wrong shape) reported together.</summary>
    private static Dictionary<string, Offered> Match(GptModel model, string source, IEnumerable<Offered> offered)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
        var matched = new Dictionary<string, Offered>(StringComparer.Ordinal);
        var problems = new List<string>();
        Offered? lmHead = null;

        foreach (var o in offered)
        {
            if (IsIgnoredBuffer(o.StoredName)) continue;
            if (o.StoredName == LmHead)
            {
                lmHead = o;
                continue;
            }
            string ours = OurName(o.StoredName);
            if (!parameters.TryGetValue(ours, out var p))
            {
                problems.Add($"unexpected tensor '{o.StoredName}' {Dims(o.Shape)}: the model has no parameter '{ours}'");
                continue;
            }
            if (matched.TryGetValue(ours, out var first))
            {
                problems.Add($"'{ours}' is stored twice, as '{first.StoredName}' and as '{o.StoredName}'");
                continue;
            }
            matched[ours] = o;
            if (!o.Shape.SequenceEqual(p.shape))
                problems.Add($"wrong shape for '{o.StoredName}': the model expects {Dims(p.shape)}, found {Dims(o.Shape)}");
            else if (o.DType is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
                problems.Add($"'{o.StoredName}' is {o.DType}, not a floating-point tensor");
        }
        foreach (var name in parameters.Keys.Where(n => !matched.ContainsKey(n)))
            problems.Add($"missing tensor '{name}' {Dims(parameters[name].shape)}");

        // lm_head is tied to wte in GPT-2 (and in our model): accept it only when it is that same matrix.
        var wteName = Prefix + "wte.weight";
        if (lmHead is not null)
        {
            var wteShape = parameters[wteName].shape;
            if (!lmHead.Shape.SequenceEqual(wteShape))
                problems.Add($"wrong shape for '{LmHead}': it is tied to wte, so the model expects {Dims(wteShape)}, found {Dims(lmHead.Shape)}");
            else if (matched.TryGetValue(wteName, out var wte) && wte.Shape.SequenceEqual(wteShape))
            {
                using var scope = NewDisposeScope();
                var a = lmHead.Read().to(ScalarType.Float32);
                var b = wte.Read().to(ScalarType.Float32);
                if (!a.eq(b).all().item<bool>())
                    problems.Add($"'{LmHead}' differs from '{wte.StoredName}': this model ties the LM head to the token embedding and cannot hold a separate one");
            }
        }

        if (problems.Count > 0)
            throw new ModelFileException($"{source} does not match the GPT-2 model (n_layer={model.Config.Layers}, n_embd={model.Config.Hidden}, " +
                                         $"vocab_size={model.Config.VocabSize}, n_positions={model.Config.ContextLength}); {problems.Count} problem(s):\n  - " +
                                         string.Join("\n  - ", problems) +
                                         $"\nCheck that {ConfigFileName} (or --heads and the inferred sizes) describes this file.");
        return matched;
    }

    // ---------------------------------------------------------------- export

    /// <summary>
    /// Writes a model's weights as one HF GPT-2 safetensors file (names with the transformer. prefix, no
    /// lm_head.weight, as GPT2LMHeadModel.save_pretrained writes them) plus config.json in the same folder.
    /// </summary>
    public static void Export(GptModel model, string outPath, ScalarType dtype)
    {
        var sources = model.named_parameters()
            .Select(p => new TensorSource(p.name, p.parameter.dtype, p.parameter.shape, () => p.parameter.detach()));
        Export(model.Config, sources, outPath, dtype);
    }

    /// <summary>
    /// Writes named tensors (our parameter names) as an HF GPT-2 safetensors file in <paramref name="dtype"/>,
    /// loading one tensor at a time, plus config.json beside it. The names must be exactly the model's
    /// parameters; every mismatch is listed in one exception before anything is written.
    /// </summary>
    public static void Export(GptConfig config, IEnumerable<TensorSource> sources, string outPath, ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"export dtype {dtype} is not supported; use fp32, bf16 or fp16.");
        var ordered = CheckedTensors(config, sources, outPath);
        // transformers refuses safetensors files whose metadata lacks format=pt.
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafetensorsWriter.Save(outPath, ordered, dtype, metadata);
        WriteConfigJson(config, ConfigPathBeside(outPath), dtype);
    }

    /// <summary>
    /// The tensors (our parameter names, which are HF's) in the order GPT2LMHeadModel stores them; they must be exactly
    /// the model's parameters: every mismatch is listed in one exception naming <paramref name="target"/>.
    /// </summary>
    public static IReadOnlyList<TensorSource> CheckedTensors(GptConfig config, IEnumerable<TensorSource> sources, string target)
    {
        var given = new Dictionary<string, TensorSource>(StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (var s in sources)
        {
            string ours = OurName(s.Name);
            if (!given.TryAdd(ours, s)) problems.Add($"'{ours}' is given twice");
        }
        var ordered = new List<TensorSource>();
        foreach (var (name, shape) in ParameterShapes(config))
        {
            if (!given.Remove(name, out var s)) problems.Add($"missing '{name}' {Dims(shape)}");
            else if (!s.Shape.SequenceEqual(shape)) problems.Add($"wrong shape for '{name}': expected {Dims(shape)}, found {Dims(s.Shape)}");
            else ordered.Add(s with { Name = name });
        }
        foreach (var name in given.Keys) problems.Add($"unexpected '{name}': not a parameter of this GPT-2");
        if (problems.Count > 0)
            throw new ModelFileException($"cannot export to '{target}': the tensors do not match GPT-2 with n_layer={config.Layers}, n_embd={config.Hidden}, " +
                                         $"vocab_size={config.VocabSize}, n_positions={config.ContextLength}; {problems.Count} problem(s):\n  - " + string.Join("\n  - ", problems));
        return ordered;
    }

    // ---------------------------------------------------------------- config.json

    public static string ConfigPathBeside(string modelPath) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? ".", ConfigFileName);

    private static string TorchDtypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => "float32",
    };

    /// <summary>HF's GPT2Config for our model (atomically written).</summary>
    public static void WriteConfigJson(GptConfig c, string path, ScalarType dtype = ScalarType.Float32) => HfFolder.WriteJson(path, ConfigJson(c, dtype));

    /// <summary>HF's GPT2Config for our model.</summary>
    public static JsonObject ConfigJson(GptConfig c, ScalarType dtype = ScalarType.Float32)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["model_type"] = "gpt2",
            ["vocab_size"] = c.VocabSize,
            ["n_positions"] = c.ContextLength,
            ["n_ctx"] = c.ContextLength,
            ["n_embd"] = c.Hidden,
            ["n_layer"] = c.Layers,
            ["n_head"] = c.Heads,
            ["n_inner"] = null, // HF's default: 4 * n_embd, which is what Mlp uses
            ["activation_function"] = Activation,
            ["layer_norm_epsilon"] = LayerNormEpsilon,
            ["resid_pdrop"] = c.Dropout,
            ["embd_pdrop"] = c.Dropout,
            ["attn_pdrop"] = c.Dropout,
            ["initializer_range"] = 0.02,
            ["scale_attn_weights"] = true,
            ["scale_attn_by_inverse_layer_idx"] = false,
            ["reorder_and_upcast_attn"] = false,
            ["tie_word_embeddings"] = true,
            ["use_cache"] = true,
            ["bos_token_id"] = 50256,
            ["eos_token_id"] = 50256,
            ["torch_dtype"] = TorchDtypeName(dtype),
        };
        return json;
    }

    /// <summary>Reads an HF GPT2Config, refusing settings our model cannot reproduce.</summary>
    public static GptConfig ReadConfigJson(string path)
    {
        var r = HfConfigReader.Open(path, "HF's GPT2Config");
        var o = r.Root;
        var problems = r.Problems;
        int? Int(string key) => r.Int(key);
        double? Real(string key) => r.Real(key);
        string? Str(string key) => r.Str(key);
        bool? Bool(string key) => r.Bool(key);
        int Required(string key) => r.Required(key);

        if (Str("model_type") is string type && type != "gpt2") problems.Add($"\"model_type\" = \"{type}\": only gpt2 is supported");
        int vocab = Required("vocab_size"), layers = Required("n_layer"), hidden = Required("n_embd"), heads = Required("n_head");
        int context = Int("n_positions") ?? Int("n_ctx") ?? 0;
        if (context == 0 && o["n_positions"] is null && o["n_ctx"] is null) problems.Add("\"n_positions\" is missing");
        if (Str("activation_function") is string act && !EquivalentActivations.Contains(act))
            problems.Add($"\"activation_function\" = \"{act}\": this model uses {Activation} (GELU, tanh approximation) only");
        if (Real("layer_norm_epsilon") is double eps && Math.Abs(eps - LayerNormEpsilon) > 1e-12)
            problems.Add($"\"layer_norm_epsilon\" = {eps.ToString(CultureInfo.InvariantCulture)}: this model uses {LayerNormEpsilon.ToString(CultureInfo.InvariantCulture)}");
        if (Int("n_inner") is int inner && inner != 4 * hidden) problems.Add($"\"n_inner\" = {inner}: this model's MLP is 4 × n_embd = {4 * hidden}");
        if (Bool("tie_word_embeddings") == false) problems.Add("\"tie_word_embeddings\" = false: this model ties the LM head to wte");
        if (Bool("scale_attn_weights") == false) problems.Add("\"scale_attn_weights\" = false is not supported");
        if (Bool("scale_attn_by_inverse_layer_idx") == true) problems.Add("\"scale_attn_by_inverse_layer_idx\" = true is not supported");
        double dropout = Real("resid_pdrop") ?? 0.0;
        if (problems.Count > 0)
            throw new ModelFileException($"'{path}' cannot configure this GPT-2: " + string.Join("; ", problems) + ".");
        var config = new GptConfig(vocab, context, layers, hidden, heads, dropout);
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

    private static readonly Regex LayerIndex = new(@"^(?:transformer\.)?h\.(\d+)\.", RegexOptions.CultureInvariant);

    /// <summary>
    /// Sizes from the tensors alone: vocab and hidden from wte, context from wpe, layers from the h.N
    /// names. The head count leaves no trace in the shapes, so it must be given.
    /// </summary>
    public static GptConfig InferConfig(SafetensorsReader file, int? heads)
    {
        SafetensorsEntry Find(string name) =>
            file.Entries.FirstOrDefault(e => e.Name == Prefix + name || e.Name == name)
            ?? throw new ModelFileException($"'{file.Path}' has no '{name}' (or '{Prefix}{name}'); it does not look like a GPT-2 file.");
        var wte = Find("wte.weight");
        var wpe = Find("wpe.weight");
        if (wte.Shape.Length != 2 || wpe.Shape.Length != 2)
            throw new ModelFileException($"'{file.Path}': wte {Dims(wte.Shape)} and wpe {Dims(wpe.Shape)} must both be matrices.");
        var indices = file.Entries.Select(e => LayerIndex.Match(e.Name)).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).Distinct().ToList();
        int layers = indices.Count == 0 ? 0 : indices.Max() + 1;
        if (heads is null)
            throw new ModelFileException($"'{file.Path}' has no {ConfigFileName} beside it, and the number of attention heads cannot be inferred " +
                                         $"from tensor shapes (inferred: n_layer={layers}, n_embd={wte.Shape[1]}, vocab_size={wte.Shape[0]}, n_positions={wpe.Shape[0]}). " +
                                         $"Put HF's {ConfigFileName} beside the file or pass --heads N.");
        var config = new GptConfig((int)wte.Shape[0], (int)wpe.Shape[0], layers, (int)wte.Shape[1], heads.Value);
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ModelFileException($"'{file.Path}': sizes inferred from its tensors do not make a model: {e.Message}", e);
        }
        return config;
    }

    /// <summary>The sizes for a weights file: config.json beside it, else inferred from its tensors (with <paramref name="heads"/>).</summary>
    public static GptConfig ResolveConfig(SafetensorsReader file, int? heads)
    {
        string configPath = ConfigPathBeside(file.Path);
        if (!File.Exists(configPath)) return InferConfig(file, heads);
        var config = ReadConfigJson(configPath);
        if (heads is int h && h != config.Heads)
            throw new ModelFileException($"--heads {h} disagrees with \"n_head\" = {config.Heads} in '{configPath}'; drop --heads or fix the config.");
        return config;
    }

    /// <summary>Builds a GptModel (fp32, CPU) with the sizes of <paramref name="safetensorsPath"/> and loads its weights.</summary>
    public static GptModel Load(string safetensorsPath, int? heads = null)
    {
        if (HfFolder.IsFolder(safetensorsPath)) return HuggingFaceGpt2Folder.Load(safetensorsPath, heads);
        using var file = SafetensorsReader.Open(safetensorsPath);
        var config = ResolveConfig(file, heads);
        var model = new GptModel(config);
        try
        {
            Import(model, file);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
