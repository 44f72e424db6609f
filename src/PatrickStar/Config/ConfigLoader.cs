using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>
/// Reads a <see cref="TrainingConfig"/> from a DeepSpeed / PatrickStar style JSON file and checks its values.
/// </summary>
/// <remarks>
/// <para>
/// Parsing is strict: every key must be known, every value must have the right JSON type, and all problems
/// in a file are reported together in one <see cref="ConfigException"/>. Keys that are absent keep the
/// defaults of <see cref="TrainingConfig"/>. Comments and trailing commas are tolerated so that example
/// configurations can be annotated.
/// </para>
/// <para>
/// <see cref="Parse"/> only checks the shape of the file; range checks live in <see cref="Validate"/>
/// because command-line overrides are applied between the two.
/// </para>
/// <para>
/// All keys are described once, in a table that drives parsing, the unknown-key messages and
/// <see cref="Reference"/>, so the three cannot drift apart.
/// </para>
/// </remarks>
public static class ConfigLoader
{
    /// <summary>
    /// The engines accepted by the <c>engine</c> key. New engines add their name here.
    /// </summary>
    public static readonly string[] Engines = ["plain", "chunked"];

    // Comments and trailing commas are harmless in a hand-written config; everything else stays standard JSON.
    private static readonly JsonDocumentOptions DocumentOptions = new()
    {
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    // The order here is the order of the reference listing. Static initialisers run top to bottom, so the
    // tables derived from this one below must stay after it.
    private static readonly Field[] Fields =
    [
        NullableStringField("model.preset", c => c.Model.Preset, (c, v) => c.Model.Preset = v,
            "Model zoo preset, e.g. \"gpt2-mini\" or \"gpt2\"; null when all sizes below are given."),
        NullableIntField("model.vocab_size", c => c.Model.VocabSize, (c, v) => c.Model.VocabSize = v,
            "Vocabulary size (>= 1); null takes the preset's."),
        NullableIntField("model.n_positions", c => c.Model.ContextLength, (c, v) => c.Model.ContextLength = v,
            "Maximum context length (>= 1, and >= seq_len); null takes the preset's."),
        NullableIntField("model.n_layer", c => c.Model.Layers, (c, v) => c.Model.Layers = v,
            "Number of transformer blocks (>= 1); null takes the preset's."),
        NullableIntField("model.n_embd", c => c.Model.Hidden, (c, v) => c.Model.Hidden = v,
            "Hidden size (>= 1, divisible by n_head); null takes the preset's."),
        NullableIntField("model.n_head", c => c.Model.Heads, (c, v) => c.Model.Heads = v,
            "Number of attention heads (>= 1); null takes the preset's."),
        NullableNumberField("model.dropout", c => c.Model.Dropout, (c, v) => c.Model.Dropout = v,
            "Dropout probability in [0, 1); null takes the preset's."),
        StringListField("data.files", c => c.Data.Files, (c, v) => c.Data.Files = v,
            "Text files to train on; empty uses the built-in generated corpus."),
        NumberField("data.validation_fraction", c => c.Data.ValidationFraction, (c, v) => c.Data.ValidationFraction = v,
            "Fraction of the tokens (from the end) held out for validation, in (0, 0.5]."),
        NullableStringField("data.tokenizer", c => c.Data.Tokenizer, (c, v) => c.Data.Tokenizer = v,
            "gpt2, r50k, cl100k, o200k, or a folder with tokenizer.json / tokenizer.model; null: the --init-from folder's own, else gpt2."),
        StringField("data.text_field", c => c.Data.TextField, (c, v) => c.Data.TextField = v,
            "Field of .jsonl lines / column of .parquet files that holds the text."),
        StringField("data.bin_dtype", c => c.Data.BinDType, (c, v) => c.Data.BinDType = v,
            "Token id width of nanoGPT-style .bin files: uint16 or uint32."),
        NullableStringField("data.cache_dir", c => c.Data.CacheDir, (c, v) => c.Data.CacheDir = v,
            "Folder for token caches (never the data's folder); null: ~/.cache/pstar."),
        IntField("train_micro_batch_size_per_gpu", c => c.MicroBatchSize, (c, v) => c.MicroBatchSize = v,
            "Sequences per forward/backward pass (>= 1)."),
        IntField("gradient_accumulation_steps", c => c.GradientAccumulationSteps, (c, v) => c.GradientAccumulationSteps = v,
            "Micro batches accumulated per optimizer step (>= 1)."),
        // Not stored: DeepSpeed files carry it, so it is accepted and cross-checked (see CheckTrainBatchSize).
        new Field("train_batch_size", "int", _ => "micro batch * accumulation",
            "Optional; if given it must equal train_micro_batch_size_per_gpu * gradient_accumulation_steps (one GPU).",
            (state, element, _) =>
            {
                if (state.ReadInteger(element, "train_batch_size", int.MinValue, int.MaxValue, out long value))
                    state.DeclaredTrainBatchSize = value;
            }),
        IntField("seq_len", c => c.SequenceLength, (c, v) => c.SequenceLength = v,
            "Tokens per training sequence (>= 1, <= model.n_positions)."),
        IntField("steps", c => c.Steps, (c, v) => c.Steps = v,
            "Optimizer steps to run (>= 1)."),
        ChoiceField("optimizer.type", c => c.Optimizer.Type, (c, v) => c.Optimizer.Type = v,
            "Optimizer; case-insensitive."),
        NumberField("optimizer.params.lr", c => c.Optimizer.LearningRate, (c, v) => c.Optimizer.LearningRate = v,
            "Peak learning rate (> 0)."),
        new Field("optimizer.params.betas", "[number, number]",
            c => $"[{Show(c.Optimizer.Beta1)}, {Show(c.Optimizer.Beta2)}]",
            "Adam beta1 and beta2, each in [0, 1).",
            (state, element, c) =>
            {
                if (state.ReadBetas(element, "optimizer.params.betas", out double beta1, out double beta2))
                    (c.Optimizer.Beta1, c.Optimizer.Beta2) = (beta1, beta2);
            }) { Value = c => new JsonArray(JsonValue.Create(c.Optimizer.Beta1), JsonValue.Create(c.Optimizer.Beta2)) },
        NumberField("optimizer.params.eps", c => c.Optimizer.Eps, (c, v) => c.Optimizer.Eps = v,
            "Adam epsilon (> 0)."),
        NumberField("optimizer.params.weight_decay", c => c.Optimizer.WeightDecay, (c, v) => c.Optimizer.WeightDecay = v,
            "Decoupled weight decay for AdamW, L2 penalty for Adam (>= 0)."),
        BoolField("optimizer.params.no_decay_bias_and_norm", c => c.Optimizer.NoDecayOnBiasAndNorm,
            (c, v) => c.Optimizer.NoDecayOnBiasAndNorm = v,
            "Exempt biases and LayerNorm weights (1-D tensors) from weight decay."),
        ChoiceField("scheduler.type", c => c.Scheduler.Type, (c, v) => c.Scheduler.Type = v,
            "Learning-rate schedule; case-insensitive."),
        IntField("scheduler.params.warmup_steps", c => c.Scheduler.WarmupSteps, (c, v) => c.Scheduler.WarmupSteps = v,
            "Linear warm-up steps from 0 to the peak rate (>= 0)."),
        NullableIntField("scheduler.params.total_steps", c => c.Scheduler.TotalSteps, (c, v) => c.Scheduler.TotalSteps = v,
            "Steps over which the rate decays (>= 1); null uses steps."),
        NumberField("scheduler.params.min_lr_ratio", c => c.Scheduler.MinLrRatio, (c, v) => c.Scheduler.MinLrRatio = v,
            "Floor of the decay as a fraction of the peak rate, in [0, 1]."),
        PrecisionFlag("bf16.enabled", Precision.Bf16, Precision.Fp16, "fp16.enabled",
            "bf16 compute with fp32 master weights, no loss scaling; false trains in fp32."),
        PrecisionFlag("fp16.enabled", Precision.Fp16, Precision.Bf16, "bf16.enabled",
            "fp16 compute with fp32 master weights and loss scaling (for GPUs: fp16 is very slow on CPUs)."),
        Bf16Fp32ComputeFlag(),
        NumberField("fp16.loss_scale", c => c.Fp16.LossScale, (c, v) => c.Fp16.LossScale = v,
            "A fixed loss scale (> 0), or 0 for the dynamic scaler."),
        IntField("fp16.initial_scale_power", c => c.Fp16.InitialScalePower, (c, v) => c.Fp16.InitialScalePower = v,
            "The dynamic scaler starts at 2^power, in [0, 64]."),
        IntField("fp16.loss_scale_window", c => c.Fp16.LossScaleWindow, (c, v) => c.Fp16.LossScaleWindow = v,
            "Clean steps after which the dynamic scale doubles (>= 1)."),
        IntField("fp16.hysteresis", c => c.Fp16.Hysteresis, (c, v) => c.Fp16.Hysteresis = v,
            "Overflowing steps tolerated before the scale is halved (>= 1); every overflowing step is skipped."),
        NumberField("fp16.min_loss_scale", c => c.Fp16.MinLossScale, (c, v) => c.Fp16.MinLossScale = v,
            "Floor of the dynamic scale (> 0)."),
        NumberField("gradient_clipping", c => c.GradientClipping, (c, v) => c.GradientClipping = v,
            "Global gradient-norm clipping threshold (>= 0); 0 disables clipping."),
        LongField("seed", c => c.Seed, (c, v) => c.Seed = v,
            "Random seed for initialisation, data order and dropout."),
        IntField("eval.interval", c => c.Eval.Interval, (c, v) => c.Eval.Interval = v,
            "Validate every this many steps and at the end (>= 0); 0 validates only at the end."),
        IntField("eval.batches", c => c.Eval.Batches, (c, v) => c.Eval.Batches = v,
            "Validation batches averaged per evaluation (>= 1)."),
        StringField("engine", c => c.Engine, (c, v) => c.Engine = v,
            "Engine that runs the model: " + string.Join(", ", Engines.Select(e => $"\"{e}\"")) + "."),
        StringField("device", c => c.Device, (c, v) => c.Device = v,
            "Compute device: \"auto\" (CUDA when available), \"cpu\", \"cuda\" or \"cuda:N\"."),
        IntField("threads", c => c.Threads, (c, v) => c.Threads = v,
            "Intra-op CPU threads for torch (>= 0); 0 keeps torch's default."),
        BoolField("activation_checkpointing", c => c.ActivationCheckpointing, (c, v) => c.ActivationCheckpointing = v,
            "Recompute each transformer block's activations in backward instead of keeping them (less memory, one more forward)."),
        SizeField("chunk_size", c => c.Chunks.ChunkSize, (c, v) => c.Chunks.ChunkSize = v,
            "Chunked engine: elements per chunk (>= the largest parameter); null searches for the size that wastes least."),
        ChoiceField("placement_policy", c => c.Chunks.Placement, (c, v) => c.Chunks.Placement = v,
            "Chunked engine: \"dynamic\" (moved by the warm-up trace) or \"static\" (parameter chunks pinned on the device)."),
        SizeField("device_memory", c => c.Chunks.DeviceMemory, (c, v) => c.Chunks.DeviceMemory = v,
            "Chunked engine: device budget in bytes, or a string such as \"2GiB\"; null: a quarter of available memory on a CPU device."),
        SizeField("host_memory", c => c.Chunks.HostMemory, (c, v) => c.Chunks.HostMemory = v,
            "Chunked engine: host budget for chunks in bytes or \"16GiB\"; null: available memory minus the device budget."),
        NumberField("mem_tracer.warmup_device_ratio", c => c.Chunks.WarmupDeviceRatio, (c, v) => c.Chunks.WarmupDeviceRatio = v,
            "Chunked engine: fraction of the device budget chunks may use during the warm-up iteration, in (0, 1]."),
        NullableStringField("checkpoint.save_dir", c => c.Checkpoint.SaveDir, (c, v) => c.Checkpoint.SaveDir = v,
            "Directory for step-NNNNNNNN training checkpoints; null saves none."),
        IntField("checkpoint.save_every", c => c.Checkpoint.SaveEvery, (c, v) => c.Checkpoint.SaveEvery = v,
            "Save every this many steps (>= 0); checkpoints are also saved at the end and on SIGINT/SIGTERM. 0: only then."),
        IntField("checkpoint.keep_last", c => c.Checkpoint.KeepLast, (c, v) => c.Checkpoint.KeepLast = v,
            "Keep the newest this many checkpoints (>= 0); 0 keeps all."),
        BoolField("checkpoint.auto_resume", c => c.Checkpoint.AutoResume, (c, v) => c.Checkpoint.AutoResume = v,
            "Continue from the newest checkpoint in save_dir if it holds checkpoints of this config; false starts fresh and moves them to save_dir/earlier-UTC/."),
        BoolField("use_hybrid_adam", c => c.Chunks.HybridAdam, (c, v) => c.Chunks.HybridAdam = v,
            "Chunked engine: update optimizer-state chunks on the device when the traced margin has room; false keeps them on the host."),
        ChoiceField("distributed.mode", c => c.Distributed.Mode, (c, v) => c.Distributed.Mode = v,
            "Data parallelism (several ranks, chunked engine): \"gather\" (all-gather a group of chunks, reduce-scatter its gradients) or " +
            "\"broadcast\" (one chunk at a time from its owner: less memory, more collectives)."),
        NumberField("mem_tracer.margin_use_ratio", c => c.Chunks.MarginUseRatio, (c, v) => c.Chunks.MarginUseRatio = v,
            "Chunked engine: fraction of the device margin optimizer-state chunks may take, in [0, 1]."),
    ];

    private static readonly Dictionary<string, Field> FieldsByKey = Fields.ToDictionary(f => f.Key, StringComparer.Ordinal);

    // Every object level ("" is the top level) mapped to the names allowed directly inside it, in table order.
    // Sections are not declared separately: they are the prefixes of the field keys.
    private static readonly Dictionary<string, List<string>> ChildrenByPath = BuildChildren();

    /// <summary>
    /// Every configuration key with its JSON type, its default and what it means; the source for printed
    /// and documented references.
    /// </summary>
    public static IReadOnlyList<(string Key, string Type, string Default, string Meaning)> Reference { get; } =
        BuildReference();

    /// <summary>
    /// The whole configuration as a JSON document in the file format (every stored key, nested by section), so
    /// that <see cref="Parse"/> gives the same configuration back; checkpoints keep it.
    /// </summary>
    public static string ToJson(TrainingConfig c)
    {
        var root = new JsonObject();
        foreach (Field field in Fields)
        {
            if (field.Value is null) continue;
            string[] parts = field.Key.Split('.');
            JsonObject node = root;
            foreach (string part in parts[..^1])
            {
                if (node[part] is not JsonObject child) node[part] = child = new JsonObject();
                node = child;
            }
            node[parts[^1]] = field.Value(c);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>
    /// Reads and parses a JSON configuration file. Values are not range-checked; call <see cref="Validate"/>
    /// after applying any overrides.
    /// </summary>
    /// <exception cref="ConfigException">The file is missing or unreadable, is not valid JSON, or has unknown
    /// keys or values of the wrong type.</exception>
    public static TrainingConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);

        string fullPath;
        try
        {
            fullPath = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new ConfigException($"Configuration path '{path}' is not a valid path: {ex.Message}", ex);
        }

        // Name the path as given, plus where it resolved to when that differs, so relative paths are debuggable.
        string shown = fullPath == path ? $"'{path}'" : $"'{path}' (resolved to '{fullPath}')";
        if (Directory.Exists(fullPath))
            throw new ConfigException($"Configuration file {shown} is a directory; pass the path of a JSON file.");
        if (!File.Exists(fullPath))
            throw new ConfigException($"Configuration file {shown} does not exist; check the path or create the file.");

        string text;
        try
        {
            text = File.ReadAllText(fullPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            throw new ConfigException(
                $"Configuration file {shown} cannot be read: {ex.Message} Check that it exists and is readable.", ex);
        }

        return Parse(text, path);
    }

    /// <summary>
    /// Parses JSON text into a configuration, starting from the defaults of <see cref="TrainingConfig"/> and
    /// applying every key present. Values are not range-checked; see <see cref="Validate"/>.
    /// </summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">Where the text came from (a file path), used in error messages.</param>
    /// <exception cref="ConfigException">Invalid JSON, unknown keys, wrong value types, or a
    /// <c>train_batch_size</c> that disagrees with the micro batch and accumulation.</exception>
    public static TrainingConfig Parse(string json, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(sourceName);

        // The parser's own message for this case talks about "isFinalBlock", which helps nobody.
        if (string.IsNullOrWhiteSpace(json))
            throw new ConfigException($"{sourceName}: the file is empty; write a JSON object such as {{ \"steps\": 300 }}, or {{}} for the defaults.");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException ex)
        {
            throw new ConfigException($"{sourceName}: invalid JSON at {DescribePosition(ex)}: {ParserMessage(ex)} "
                + "Fix the syntax there (a missing comma, quote or bracket is the usual cause).", ex);
        }

        using (document)
        {
            var config = new TrainingConfig();
            var state = new ParseState();
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException(
                    $"{sourceName}: the top level is {Written(root)}, but it must be a JSON object such as {{ \"steps\": 300 }}.");
            }

            ApplyObject(state, root, "", config);
            CheckTrainBatchSize(state, config);
            ResolveFp32Compute(state, config);

            if (state.Errors.Count > 0)
                throw new ConfigException(FormatErrors(sourceName, state.Errors));
            return config;
        }
    }

    /// <summary>
    /// Range-checks a configuration (after the file and any command-line overrides are applied). All problems
    /// are collected and reported together.
    /// </summary>
    /// <param name="c">The configuration to check.</param>
    /// <param name="sourceName">Where the values came from, used in the error message.</param>
    /// <exception cref="ConfigException">One or more values are out of range; the message lists them all,
    /// one per line, by their JSON key.</exception>
    public static void Validate(TrainingConfig c, string sourceName = "configuration")
    {
        ArgumentNullException.ThrowIfNull(c);
        ArgumentNullException.ThrowIfNull(sourceName);

        var errors = new List<string>();
        void Require(bool ok, string key, object? value, string allowed)
        {
            if (!ok)
                errors.Add($"{key} is {Show(value)}, but it must be {allowed}.");
        }

        // Comparisons are written so that NaN fails them (NaN can arrive through command-line overrides).
        var model = c.Model;
        Require(model.Preset is null || model.Preset.Trim().Length > 0, "model.preset", model.Preset,
            "a preset name, or null when all sizes are given");
        foreach (var (key, value) in new[]
                 {
                     ("model.vocab_size", model.VocabSize), ("model.n_positions", model.ContextLength),
                     ("model.n_layer", model.Layers), ("model.n_embd", model.Hidden), ("model.n_head", model.Heads),
                 })
        {
            Require(value is null or >= 1, key, value, ">= 1 (or null to take the preset's value)");
        }

        if (model.Hidden is int hidden and >= 1 && model.Heads is int heads and >= 1 && hidden % heads != 0)
        {
            int lower = hidden / heads * heads;
            string nearest = lower >= heads ? $"{lower} or {lower + heads}" : $"{heads}";
            errors.Add($"model.n_embd is {hidden} and model.n_head is {heads}, but n_embd must be divisible by n_head "
                + $"(e.g. n_embd {nearest}).");
        }

        Require(model.Dropout is null || (model.Dropout >= 0 && model.Dropout < 1), "model.dropout", model.Dropout,
            "in [0, 1) (or null to take the preset's value)");

        var files = c.Data.Files ?? [];
        for (int i = 0; i < files.Count; i++)
            Require(!string.IsNullOrWhiteSpace(files[i]), $"data.files[{i}]", files[i], "a non-empty file path");
        Require(c.Data.ValidationFraction > 0 && c.Data.ValidationFraction <= 0.5, "data.validation_fraction",
            c.Data.ValidationFraction, "in (0, 0.5]");
        Require(c.Data.BinDType is "uint16" or "uint32", "data.bin_dtype", c.Data.BinDType, "uint16 or uint32");
        Require(!string.IsNullOrWhiteSpace(c.Data.TextField), "data.text_field", c.Data.TextField, "a non-empty field name");

        Require(c.MicroBatchSize >= 1, "train_micro_batch_size_per_gpu", c.MicroBatchSize, ">= 1");
        Require(c.GradientAccumulationSteps >= 1, "gradient_accumulation_steps", c.GradientAccumulationSteps, ">= 1");
        Require(c.SequenceLength >= 1, "seq_len", c.SequenceLength, ">= 1");
        if (c.SequenceLength >= 1 && model.ContextLength is int positions and >= 1 && c.SequenceLength > positions)
        {
            errors.Add($"seq_len is {c.SequenceLength}, but it must be <= model.n_positions, which is {positions}; "
                + "lower seq_len or raise model.n_positions.");
        }

        Require(c.Steps >= 1, "steps", c.Steps, ">= 1");

        var optimizer = c.Optimizer;
        Require(double.IsFinite(optimizer.LearningRate) && optimizer.LearningRate > 0, "optimizer.params.lr",
            optimizer.LearningRate, "a finite number > 0");
        Require(optimizer.Beta1 >= 0 && optimizer.Beta1 < 1, "optimizer.params.betas[0]", optimizer.Beta1, "in [0, 1)");
        Require(optimizer.Beta2 >= 0 && optimizer.Beta2 < 1, "optimizer.params.betas[1]", optimizer.Beta2, "in [0, 1)");
        Require(double.IsFinite(optimizer.Eps) && optimizer.Eps > 0, "optimizer.params.eps", optimizer.Eps,
            "a finite number > 0");
        Require(double.IsFinite(optimizer.WeightDecay) && optimizer.WeightDecay >= 0, "optimizer.params.weight_decay",
            optimizer.WeightDecay, "a finite number >= 0");

        var scheduler = c.Scheduler;
        Require(scheduler.WarmupSteps >= 0, "scheduler.params.warmup_steps", scheduler.WarmupSteps, ">= 0");
        Require(scheduler.TotalSteps is null or >= 1, "scheduler.params.total_steps", scheduler.TotalSteps,
            ">= 1 (or null to use steps)");
        Require(scheduler.MinLrRatio >= 0 && scheduler.MinLrRatio <= 1, "scheduler.params.min_lr_ratio",
            scheduler.MinLrRatio, "in [0, 1]");

        Require(double.IsFinite(c.GradientClipping) && c.GradientClipping >= 0, "gradient_clipping",
            c.GradientClipping, "a finite number >= 0 (0 disables clipping)");
        Require(c.Eval.Interval >= 0, "eval.interval", c.Eval.Interval, ">= 0 (0 validates only at the end)");
        Require(c.Eval.Batches >= 1, "eval.batches", c.Eval.Batches, ">= 1");

        Require(c.Engine is not null && Engines.Contains(c.Engine, StringComparer.Ordinal), "engine", c.Engine,
            "one of " + string.Join(", ", Engines.Select(e => $"\"{e}\"")));
        Require(IsValidDevice(c.Device), "device", c.Device,
            "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\" with N a device index such as \"cuda:0\"");
        // More threads than cores only slows torch down, and a huge count starts thousands of threads that starve the machine.
        Require(c.Threads >= 0 && c.Threads <= Environment.ProcessorCount, "threads", c.Threads,
            $"between 0 and the {Environment.ProcessorCount} cores of this machine (0 keeps torch's default: one per core)");
        Require(c.Chunks.ChunkSize is null or >= 1, "chunk_size", c.Chunks.ChunkSize, ">= 1 element (or null to search)");
        Require(c.Chunks.DeviceMemory is null or >= 1, "device_memory", c.Chunks.DeviceMemory, ">= 1 byte (or null)");
        Require(c.Chunks.HostMemory is null or >= 1, "host_memory", c.Chunks.HostMemory, ">= 1 byte (or null)");
        Require(c.Chunks.WarmupDeviceRatio > 0 && c.Chunks.WarmupDeviceRatio <= 1, "mem_tracer.warmup_device_ratio",
            c.Chunks.WarmupDeviceRatio, "in (0, 1]");
        Require(c.Chunks.MarginUseRatio >= 0 && c.Chunks.MarginUseRatio <= 1, "mem_tracer.margin_use_ratio",
            c.Chunks.MarginUseRatio, "in [0, 1]");
        Require(c.Checkpoint.SaveDir is null || c.Checkpoint.SaveDir.Trim().Length > 0, "checkpoint.save_dir", c.Checkpoint.SaveDir, "a directory path, or null");
        Require(c.Checkpoint.SaveEvery >= 0, "checkpoint.save_every", c.Checkpoint.SaveEvery, ">= 0");
        Require(c.Checkpoint.KeepLast >= 0, "checkpoint.keep_last", c.Checkpoint.KeepLast, ">= 0 (0 keeps all)");
        var fp16 = c.Fp16;
        Require(double.IsFinite(fp16.LossScale) && fp16.LossScale >= 0, "fp16.loss_scale", fp16.LossScale,
            "a finite number > 0, or 0 for the dynamic scaler");
        Require(fp16.InitialScalePower is >= 0 and <= 64, "fp16.initial_scale_power", fp16.InitialScalePower, "in [0, 64]");
        Require(fp16.LossScaleWindow >= 1, "fp16.loss_scale_window", fp16.LossScaleWindow, ">= 1");
        Require(fp16.Hysteresis >= 1, "fp16.hysteresis", fp16.Hysteresis, ">= 1");
        Require(double.IsFinite(fp16.MinLossScale) && fp16.MinLossScale > 0, "fp16.min_loss_scale", fp16.MinLossScale,
            "a finite number > 0");

        if (errors.Count > 0)
            throw new ConfigException(FormatErrors(sourceName, errors));
    }

    // ---- Parsing ------------------------------------------------------------------------------------------

    private static void ApplyObject(ParseState state, JsonElement obj, string path, TrainingConfig config)
    {
        // JsonDocument keeps repeated names; with "last one wins" a stale value could silently survive an edit.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in obj.EnumerateObject())
        {
            string key = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
            JsonElement value = property.Value;
            if (!seen.Add(property.Name))
            {
                state.Error(key, $"{key} appears more than once; keep only one.");
            }
            else if (FieldsByKey.TryGetValue(key, out Field? field))
            {
                field.Apply(state, value, config);
            }
            else if (ChildrenByPath.ContainsKey(key))
            {
                if (value.ValueKind == JsonValueKind.Object)
                    ApplyObject(state, value, key, config);
                else if (value.ValueKind == JsonValueKind.Null)
                    state.Error(key, $"{key} is null, but it must be an object; remove the key to keep the defaults.");
                else
                    state.TypeError(key, value, "an object");
            }
            else
            {
                state.Error(key, UnknownKeyMessage(path, property.Name, key));
            }
        }
    }

    private static string UnknownKeyMessage(string path, string name, string key)
    {
        List<string> allowed = ChildrenByPath[path];
        var message = new StringBuilder($"{key} is not a known key");

        // A near miss at the same level is most likely a typo.
        string? closest = allowed
            .Select(candidate => (candidate, distance: EditDistance(name.ToLowerInvariant(), candidate.ToLowerInvariant())))
            .Where(x => x.distance <= 2)
            .OrderBy(x => x.distance)
            .Select(x => x.candidate)
            .FirstOrDefault();
        if (closest is not null)
            message.Append($"; did you mean '{closest}'?");
        else
            message.Append('.');

        // An exact name from another level (e.g. "lr" at the top) is most likely misplaced.
        var elsewhere = Fields.Select(f => f.Key).Concat(ChildrenByPath.Keys)
            .Where(known => known.Length > 0 && known != key && LastSegment(known).Equals(name, StringComparison.OrdinalIgnoreCase))
            .Distinct()
            .ToList();
        if (elsewhere.Count > 0)
            message.Append($" It belongs at {string.Join(" or ", elsewhere.Select(k => $"'{k}'"))}.");

        string level = path.Length == 0 ? "top-level keys" : $"keys in '{path}'";
        message.Append($" Allowed {level}: {string.Join(", ", allowed)}.");
        return message.ToString();
    }

    private static void CheckTrainBatchSize(ParseState state, TrainingConfig config)
    {
        // Skip when the factors themselves were malformed: the mismatch would only restate that error.
        if (state.DeclaredTrainBatchSize is not long declared
            || state.FailedKeys.Contains("train_micro_batch_size_per_gpu")
            || state.FailedKeys.Contains("gradient_accumulation_steps"))
        {
            return;
        }

        long product = (long)config.MicroBatchSize * config.GradientAccumulationSteps;
        if (declared != product)
        {
            state.Error("train_batch_size",
                $"train_batch_size is {declared}, but train_micro_batch_size_per_gpu ({config.MicroBatchSize}) * "
                + $"gradient_accumulation_steps ({config.GradientAccumulationSteps}) = {product} on one GPU; "
                + $"set train_batch_size to {product} or remove it.");
        }
    }

    private static string DescribePosition(JsonException ex) =>
        ex.LineNumber is long line
            ? $"line {line + 1}, position {(ex.BytePositionInLine ?? 0) + 1}" // the parser counts from 0
            : "an unknown position";

    // The parser appends its own zero-based "LineNumber: 2 | BytePositionInLine: 4." which would contradict the
    // one-based position already given, so cut it off.
    private static string ParserMessage(JsonException ex)
    {
        string message = ex.Message;
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0)
            cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        message = (cut >= 0 ? message[..cut] : message).Trim();
        return message.EndsWith('.') ? message : message + ".";
    }

    private static bool IsValidDevice(string? device) =>
        device is "auto" or "cpu" or "cuda"
        || (device is not null && device.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(device.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out _));

    /// <summary>Collects the problems of one parse so they are all reported together.</summary>
    private sealed class ParseState
    {
        public List<string> Errors { get; } = new();

        /// <summary>Keys that already have an error, so follow-on checks can stay quiet about them.</summary>
        public HashSet<string> FailedKeys { get; } = new(StringComparer.Ordinal);

        public long? DeclaredTrainBatchSize { get; set; }

        /// <summary>bf16.fp32_compute as read; resolved once every key is in, since bf16.enabled may come after it.</summary>
        public bool? Fp32Compute { get; set; }

        public void Error(string key, string message)
        {
            Errors.Add(message);
            FailedKeys.Add(key);
        }

        public void TypeError(string key, JsonElement value, string expected)
        {
            // "lr": "1e-3" is a common slip when copying from YAML or shell scripts.
            bool quotedNumber = value.ValueKind == JsonValueKind.String
                && (expected.Contains("number", StringComparison.Ordinal) || expected.Contains("integer", StringComparison.Ordinal))
                && double.TryParse(value.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out _);
            string hint = quotedNumber ? " Remove the quotes." : "";
            Error(key, $"{key} is {Written(value)}, but it must be {expected}.{hint}");
        }

        /// <summary>Reads a whole number; 3.0 is accepted since JSON writers often emit it, 3.5 is not.</summary>
        public bool ReadInteger(JsonElement value, string key, long min, long max, out long result)
        {
            result = 0;
            if (value.ValueKind != JsonValueKind.Number)
            {
                TypeError(key, value, "an integer");
                return false;
            }

            // Plain integers land here; "3.0", "3e2" and anything beyond 64 bits do not.
            bool fitsLong = value.TryGetInt64(out result);
            if (!fitsLong)
            {
                if (value.TryGetDouble(out double number) && double.IsFinite(number))
                {
                    if (Math.Floor(number) != number)
                    {
                        TypeError(key, value, "an integer");
                        return false;
                    }

                    // long.MinValue and long.MaxValue convert to exactly -2^63 and 2^63, so this bounds the cast.
                    fitsLong = number >= long.MinValue && number < long.MaxValue;
                    if (fitsLong)
                        result = (long)number;
                }
            }

            if (fitsLong && result >= min && result <= max)
                return true;
            Error(key, $"{key} is {Written(value)}, which is outside the integer range {min}..{max}.");
            return false;
        }

        public bool ReadNumber(JsonElement value, string key, out double result)
        {
            result = 0;
            if (value.ValueKind != JsonValueKind.Number)
            {
                TypeError(key, value, "a number");
                return false;
            }

            if (value.TryGetDouble(out result) && double.IsFinite(result))
                return true;
            Error(key, $"{key} is {Written(value)}, which is too large for a number.");
            return false;
        }

        public bool ReadBool(JsonElement value, string key, out bool result)
        {
            result = value.ValueKind == JsonValueKind.True;
            if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                return true;
            TypeError(key, value, "true or false");
            return false;
        }

        public bool ReadString(JsonElement value, string key, bool allowNull, out string? result)
        {
            result = null;
            if (value.ValueKind == JsonValueKind.String)
            {
                result = value.GetString();
                return true;
            }

            if (allowNull && value.ValueKind == JsonValueKind.Null)
                return true;
            TypeError(key, value, allowNull ? "a string or null" : "a string");
            return false;
        }

        public bool ReadBetas(JsonElement value, string key, out double beta1, out double beta2)
        {
            beta1 = beta2 = 0;
            if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() != 2
                || value.EnumerateArray().Any(item => item.ValueKind != JsonValueKind.Number))
            {
                TypeError(key, value, "an array of exactly two numbers, e.g. [0.9, 0.95]");
                return false;
            }

            // "&" rather than "&&" so that a problem in either element is reported.
            return ReadNumber(value[0], $"{key}[0]", out beta1) & ReadNumber(value[1], $"{key}[1]", out beta2);
        }

        public bool ReadStringList(JsonElement value, string key, out List<string> result)
        {
            result = new List<string>();
            if (value.ValueKind != JsonValueKind.Array)
            {
                TypeError(key, value, "an array of strings, e.g. [\"train.txt\"]");
                return false;
            }

            bool ok = true;
            int index = 0;
            foreach (JsonElement item in value.EnumerateArray())
            {
                if (ReadString(item, $"{key}[{index}]", allowNull: false, out string? text))
                    result.Add(text!);
                else
                    ok = false;
                index++;
            }

            return ok;
        }
    }

    // ---- The key table --------------------------------------------------------------------------------------

    /// <summary>One configuration key: how it is documented and how a JSON value is applied to the config.</summary>
    private sealed record Field(
        string Key,
        string Type,
        Func<TrainingConfig, string> Default,
        string Meaning,
        Action<ParseState, JsonElement, TrainingConfig> Apply)
    {
        /// <summary>The field's current value as JSON (null for keys that are not stored, such as train_batch_size).</summary>
        public Func<TrainingConfig, JsonNode?>? Value { get; init; }
    }

    private static Field IntField(string key, Func<TrainingConfig, int> get, Action<TrainingConfig, int> set, string meaning) =>
        new(key, "int", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadInteger(value, key, int.MinValue, int.MaxValue, out long v))
                set(c, (int)v);
        }) { Value = c => JsonValue.Create(get(c)) };

    private static Field NullableIntField(string key, Func<TrainingConfig, int?> get, Action<TrainingConfig, int?> set,
        string meaning) =>
        new(key, "int | null", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null)
                set(c, null);
            else if (state.ReadInteger(value, key, int.MinValue, int.MaxValue, out long v))
                set(c, (int)v);
        }) { Value = c => get(c) is int v ? JsonValue.Create(v) : null };

    private static Field LongField(string key, Func<TrainingConfig, long> get, Action<TrainingConfig, long> set,
        string meaning) =>
        new(key, "int (64-bit)", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadInteger(value, key, long.MinValue, long.MaxValue, out long v))
                set(c, v);
        }) { Value = c => JsonValue.Create(get(c)) };

    private static Field NumberField(string key, Func<TrainingConfig, double> get, Action<TrainingConfig, double> set,
        string meaning) =>
        new(key, "number", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadNumber(value, key, out double v))
                set(c, v);
        }) { Value = c => JsonValue.Create(get(c)) };

    private static Field NullableNumberField(string key, Func<TrainingConfig, double?> get,
        Action<TrainingConfig, double?> set, string meaning) =>
        new(key, "number | null", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null)
                set(c, null);
            else if (state.ReadNumber(value, key, out double v))
                set(c, v);
        }) { Value = c => get(c) is double v ? JsonValue.Create(v) : null };

    private static Field BoolField(string key, Func<TrainingConfig, bool> get, Action<TrainingConfig, bool> set,
        string meaning) =>
        new(key, "bool", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadBool(value, key, out bool v))
                set(c, v);
        }) { Value = c => JsonValue.Create(get(c)) };

    private static Field StringField(string key, Func<TrainingConfig, string> get, Action<TrainingConfig, string> set,
        string meaning) =>
        new(key, "string", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadString(value, key, allowNull: false, out string? v))
                set(c, v!);
        }) { Value = c => JsonValue.Create(get(c)) };

    private static Field NullableStringField(string key, Func<TrainingConfig, string?> get,
        Action<TrainingConfig, string?> set, string meaning) =>
        new(key, "string | null", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (state.ReadString(value, key, allowNull: true, out string? v))
                set(c, v);
        }) { Value = c => get(c) is string v ? JsonValue.Create(v) : null };

    private static Field StringListField(string key, Func<TrainingConfig, List<string>> get,
        Action<TrainingConfig, List<string>> set, string meaning) =>
        new(key, "[string, ...]", c => "[" + string.Join(", ", get(c).Select(Show)) + "]", meaning, (state, value, c) =>
        {
            if (state.ReadStringList(value, key, out List<string> v))
                set(c, v);
        }) { Value = c => new JsonArray(get(c).Select(x => (JsonNode?)JsonValue.Create(x)).ToArray()) };

    /// <summary>A byte or element count: an integer, a string with a unit ("2GiB", "512MB", "64M"), or null.</summary>
    private static Field SizeField(string key, Func<TrainingConfig, long?> get, Action<TrainingConfig, long?> set,
        string meaning) =>
        new(key, "int | \"<n><unit>\" | null", c => Show(get(c)), meaning, (state, value, c) =>
        {
            if (value.ValueKind == JsonValueKind.Null)
                set(c, null);
            else if (value.ValueKind == JsonValueKind.String)
            {
                if (ByteSize.TryParse(value.GetString()!, out long parsed)) set(c, parsed);
                else state.TypeError(key, value, "an integer or a size such as \"2GiB\", \"512MB\" or \"64M\"");
            }
            else if (state.ReadInteger(value, key, 0, long.MaxValue, out long v))
                set(c, v);
        }) { Value = c => get(c) is long v ? JsonValue.Create(v) : null };

    /// <summary>bf16.enabled / fp16.enabled: each selects its precision; both true is an error, since one run has one precision.</summary>
    private static Field PrecisionFlag(string key, Precision mine, Precision other, string otherKey, string meaning) =>
        new(key, "bool", c => Show(IsFamily(c.Precision, mine)), meaning, (state, value, c) =>
        {
            if (!state.ReadBool(value, key, out bool v)) return;
            if (v && IsFamily(c.Precision, other))
                state.Error(key, $"{key} and {otherKey} are both true, but a run has one precision; set one of them to false.");
            else if (v && !IsFamily(c.Precision, mine)) c.Precision = mine;
            else if (!v && IsFamily(c.Precision, mine)) c.Precision = Precision.Fp32;
        }) { Value = c => JsonValue.Create(IsFamily(c.Precision, mine)) };

    /// <summary>Whether a precision is selected by a flag: bf16.enabled covers bf16 with fp32 compute too.</summary>
    private static bool IsFamily(Precision p, Precision flag) =>
        p == flag || (flag == Precision.Bf16 && p == Precision.Bf16Fp32);

    /// <summary>
    /// bf16.fp32_compute: refines bf16.enabled (bf16 parameters, fp32 activations and matmuls: <see cref="Precision.Bf16Fp32"/>).
    /// Only recorded here: keys may come in any order, so <see cref="ResolveFp32Compute"/> applies it after all are read.
    /// </summary>
    private static Field Bf16Fp32ComputeFlag() =>
        new("bf16.fp32_compute", "bool", c => Show(c.Precision == Precision.Bf16Fp32),
            "With bf16.enabled: bf16 parameters and gradients in memory, fp32 activations and matmuls (14 B/param at fp32 speed on CPUs without fast bf16).",
            (state, value, c) =>
            {
                if (state.ReadBool(value, "bf16.fp32_compute", out bool v)) state.Fp32Compute = v;
            }) { Value = c => JsonValue.Create(c.Precision == Precision.Bf16Fp32) };

    /// <summary>Turns bf16 into bf16-with-fp32-compute when bf16.fp32_compute is true, and refuses the flag without bf16.</summary>
    private static void ResolveFp32Compute(ParseState state, TrainingConfig c)
    {
        if (state.Fp32Compute is not bool v || state.FailedKeys.Contains("bf16.enabled")) return;
        if (v && c.Precision is Precision.Bf16 or Precision.Bf16Fp32) c.Precision = Precision.Bf16Fp32;
        else if (v)
            state.Error("bf16.fp32_compute", "bf16.fp32_compute is true but bf16.enabled is not: fp32 compute is a variant of bf16 " +
                                             "(bf16 parameters, fp32 activations); add \"bf16\": { \"enabled\": true } or remove bf16.fp32_compute.");
        else if (c.Precision == Precision.Bf16Fp32) c.Precision = Precision.Bf16;
    }

    /// <summary>An enum chosen by name, case-insensitively. Numbers are refused: "1" says nothing to a reader.</summary>
    private static Field ChoiceField<T>(string key, Func<TrainingConfig, T> get, Action<TrainingConfig, T> set,
        string meaning) where T : struct, Enum
    {
        string[] names = Enum.GetNames<T>();
        string choices = string.Join(" | ", names.Select(n => $"\"{n}\""));
        return new(key, choices, c => Show(get(c).ToString()), meaning, (state, value, c) =>
        {
            string? match = value.ValueKind == JsonValueKind.String
                ? names.FirstOrDefault(n => n.Equals(value.GetString(), StringComparison.OrdinalIgnoreCase))
                : null;
            if (match is null)
                state.TypeError(key, value, $"one of {string.Join(", ", names.Select(n => $"\"{n}\""))} (case-insensitive)");
            else
                set(c, Enum.Parse<T>(match));
        }) { Value = c => JsonValue.Create(get(c).ToString()) };
    }

    private static Dictionary<string, List<string>> BuildChildren()
    {
        var children = new Dictionary<string, List<string>>(StringComparer.Ordinal) { [""] = new() };
        foreach (Field field in Fields)
        {
            string[] parts = field.Key.Split('.');
            string parent = "";
            foreach (string part in parts)
            {
                List<string> siblings = children[parent];
                if (!siblings.Contains(part))
                    siblings.Add(part);
                parent = parent.Length == 0 ? part : $"{parent}.{part}";
                if (parent != field.Key && !children.ContainsKey(parent))
                    children[parent] = new List<string>();
            }
        }

        return children;
    }

    private static IReadOnlyList<(string Key, string Type, string Default, string Meaning)> BuildReference()
    {
        var defaults = new TrainingConfig();
        return Fields.Select(f => (f.Key, f.Type, f.Default(defaults), f.Meaning)).ToArray();
    }

    // ---- Formatting ---------------------------------------------------------------------------------------

    private static string FormatErrors(string sourceName, IReadOnlyList<string> errors) =>
        errors.Count == 1
            ? $"{sourceName}: {errors[0]}"
            : $"{sourceName}: {errors.Count} problems:" + string.Concat(errors.Select(e => $"{Environment.NewLine}  - {e}"));

    /// <summary>A configuration value the way it would be written in JSON.</summary>
    private static string Show(object? value) => value switch
    {
        null => "null",
        // Quoted but not JSON-escaped: escaping would turn "a+b.txt" into "a\u002Bb.txt" in messages.
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>A JSON value exactly as the user wrote it, on one line and shortened if long.</summary>
    private static string Written(JsonElement value)
    {
        const int maxLength = 60;
        string raw = string.Join(' ', value.GetRawText().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
        return raw.Length <= maxLength ? raw : raw[..(maxLength - 3)] + "...";
    }

    private static string LastSegment(string key) => key[(key.LastIndexOf('.') + 1)..];

    /// <summary>Levenshtein distance, for "did you mean" suggestions on unknown keys.</summary>
    private static int EditDistance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
            previous[j] = j;

        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j] + 1, current[j - 1] + 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
