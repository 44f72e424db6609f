using System.CommandLine;
using System.Text.Json.Nodes;
using PatrickStar.Config;

namespace PatrickStar.Cli.Commands;

/// <summary>How a flag's text becomes the JSON value of its key.</summary>
internal enum FlagValue
{
    /// <summary>A whole number; System.CommandLine refuses anything else, naming the flag and the expected form.</summary>
    Int,
    /// <summary>A 64-bit whole number.</summary>
    Long,
    /// <summary>A number (3e-4).</summary>
    Number,
    /// <summary>JSON when the text reads as JSON ([0.9, 0.95], 4096), else a string (2GiB): as --set.</summary>
    Json,
    /// <summary>Always a string (presets and paths: "--save-dir 10" is a folder named 10).</summary>
    Text,
    /// <summary>Several strings: an array.</summary>
    TextList,
    /// <summary>A switch without a value: sets its key to <see cref="ConfigFlag.SwitchValue"/>.</summary>
    Switch,
}

/// <summary>One command-line flag bound to a config key: its text is read and checked exactly as that key in a file.</summary>
internal sealed record ConfigFlag(string Name, string Key, string Description, FlagValue Kind = FlagValue.Int, string[]? Choices = null)
{
    public bool SwitchValue { get; init; } = true;

    /// <summary>A flag that sets several keys (--precision) gives them here instead of <see cref="Key"/>.</summary>
    public Func<string, IEnumerable<ConfigOverride>>? Expand { get; init; }
}

/// <summary>
/// The flags of `pstar train` and `pstar estimate` that set config keys, in one table: flag name -> key (+ how the text
/// is read). They, and --set key=value for any key, go through <see cref="ConfigLoader.ApplyOverrides"/>: the same
/// parsing, "did you mean" and range checks as a config file.
/// </summary>
internal static class ConfigFlags
{
    public static readonly ConfigFlag[] All =
    [
        new("--model", "model.preset", "Model preset (see `pstar models`); default gpt2-mini.", FlagValue.Text),
        new("--layers", "model.n_layer", "Override the number of transformer blocks (n_layer)."),
        new("--hidden", "model.n_embd", "Override the hidden size (n_embd)."),
        new("--heads", "model.n_head", "Override the number of attention heads (n_head)."),
        new("--vocab", "model.vocab_size", "Vocabulary size (default: the preset's, GPT-2's 50,257)."),
        new("--context", "model.n_positions", "Override the model's context length (n_positions)."),
        new("--dropout", "model.dropout", "Dropout probability in [0, 1) (default: the preset's).", FlagValue.Number),
        new("--data", "data.files", "Text files or folders of *.txt to train on (UTF-8). Default: the built-in generated corpus.", FlagValue.TextList),
        new("--val-fraction", "data.validation_fraction", "Fraction of the tokens (from the end) held out for validation, in (0, 0.5].", FlagValue.Number),
        new("--tokenizer", "data.tokenizer", $"{string.Join(", ", PatrickStar.Data.Tokenizers.Names)}, or a folder with tokenizer.json / tokenizer.model " +
                                              "(default: the --init-from folder's own, else gpt2).", FlagValue.Text),
        new("--text-field", "data.text_field", "The .jsonl field / .parquet column holding the text (default \"text\").", FlagValue.Text),
        new("--bin-dtype", "data.bin_dtype", "Token id width of nanoGPT-style .bin files: uint16 (default) or uint32.", FlagValue.Text,
            PatrickStar.Data.DataOptions.BinDTypes),
        new("--cache-dir", "data.cache_dir", "Folder for token caches (default ~/.cache/pstar); never the data's folder.", FlagValue.Text),
        new("--steps", "steps", "Optimizer steps in all (default 300; a resumed run continues up to this count)."),
        new("--batch", "train_micro_batch_size_per_gpu", "Micro-batch size (sequences per forward pass, per rank; default 8)."),
        new("--accum", "gradient_accumulation_steps", "Gradient accumulation steps (micro-batches per optimizer step)."),
        new("--seq", "seq_len", "Sequence length in tokens (default 128, at most the model's context length)."),
        new("--precision", "", "fp32, bf16 (bf16 compute, fp32 master weights), bf16-fp32 (bf16 parameters and gradients, fp32 activations and matmuls: " +
                               "14 B/param at fp32 speed on CPUs without fast bf16) or fp16 (fp16 compute with loss scaling: for GPUs).",
            FlagValue.Text, PrecisionNames.All) { Expand = name => PrecisionNames.Overrides(PrecisionNames.Parse(name)) },
        new("--lr", "optimizer.params.lr", "Peak learning rate.", FlagValue.Number),
        new("--min-lr-ratio", "scheduler.params.min_lr_ratio", "The schedule's floor as a fraction of the peak rate, in [0, 1] (WarmupCosine, WarmupLinear).", FlagValue.Number),
        new("--min-lr", "scheduler.params.min_lr", "The schedule's floor as an absolute rate, below --lr; replaces --min-lr-ratio (WarmupCosine, WarmupLinear).",
            FlagValue.Number),
        new("--warmup", "scheduler.params.warmup_steps", "Warmup steps of the learning-rate schedule."),
        new("--weight-decay", "optimizer.params.weight_decay", "Weight decay (decoupled for AdamW).", FlagValue.Number),
        new("--betas", "optimizer.params.betas", "Adam's beta1,beta2, e.g. 0.9,0.95.", FlagValue.Json),
        new("--grad-clip", "gradient_clipping", "Global gradient-norm clipping threshold (0: none).", FlagValue.Number),
        new("--seed", "seed", "Seed for initialisation, dropout and batch sampling.", FlagValue.Long),
        new("--eval-interval", "eval.interval", "Validate at the first step, every N steps and at the end (0: never; default 50)."),
        new("--device", "device", "auto, cpu, cuda or cuda:N (under `pstar launch`, cuda means cuda:LOCAL_RANK: one GPU per rank of a machine).", FlagValue.Text),
        new("--threads", "threads", "Torch intra-op CPU threads, at most the core count (0: torch's default, usually one per physical core)."),
        new("--engine", "engine", "plain (everything on the device) or chunked (PatrickStar's chunk engine).", FlagValue.Text, ConfigLoader.Engines),
        new("--device-memory", "device_memory", "Chunked engine: device budget, e.g. 1GiB (default: a quarter of available memory on a CPU device).", FlagValue.Json),
        new("--host-memory", "host_memory", "Chunked engine: host budget for chunks, e.g. 16GiB (default: the rest of available memory).", FlagValue.Json),
        new("--disk-dir", "disk_dir", "Chunked engine: a directory on a local disk for a third tier (chunk files there, removed at exit).", FlagValue.Text),
        new("--disk-memory", "disk_memory", "Chunked engine: disk tier budget, e.g. 64GiB (default: what the chunks need).", FlagValue.Json),
        new("--chunk-size", "chunk_size", "Chunked engine: elements per chunk, e.g. 4M (default: the size that wastes least).", FlagValue.Json),
        new("--placement", "placement_policy", "Chunked engine: dynamic (traced, OPT eviction) or static (parameters pinned on the device).",
            FlagValue.Text, ["dynamic", "static"]),
        new("--dp-mode", "distributed.mode", "Data parallelism under `pstar launch`: gather (all-gather chunk groups) or broadcast (one chunk at a time: less memory).",
            FlagValue.Text, ["gather", "broadcast"]),
        new("--checkpointing", "activation_checkpointing", "Recompute each transformer block's activations in backward (less memory, one more forward).",
            FlagValue.Switch),
        new("--save-dir", "checkpoint.save_dir", "Save training checkpoints (step-NNNNNNNN) here: at the end, every --save-every steps and on SIGINT/SIGTERM. " +
                                                 "Locked for this run; if it holds checkpoints of this config, the run continues from the newest.", FlagValue.Text),
        new("--save-every", "checkpoint.save_every", "Save a checkpoint every N steps (0: only at the end and on a signal)."),
        new("--keep", "checkpoint.keep_last", "Keep the newest N checkpoints of this run (0: all; default 3); newer ones and other configs' are never pruned."),
        new("--no-resume", "checkpoint.auto_resume", "Start fresh even if --save-dir holds checkpoints of this config (they are moved to SAVE_DIR/earlier-UTC/, " +
                                                     "never deleted). Without it, such a save directory is resumed from its newest checkpoint.", FlagValue.Switch)
            { SwitchValue = false },
    ];

    /// <summary>The flags of `pstar estimate`: what decides memory.</summary>
    public static readonly string[] ForEstimate =
    [
        "--model", "--layers", "--hidden", "--heads", "--vocab", "--context", "--device", "--device-memory", "--host-memory", "--batch", "--seq",
        "--accum", "--checkpointing", "--precision", "--engine", "--placement", "--dp-mode", "--chunk-size", "--disk-dir", "--disk-memory",
    ];

    /// <summary>The flags of `pstar train`: all but --vocab (the data's tokenizer decides it).</summary>
    public static readonly string[] ForTrain = All.Select(f => f.Name).Where(n => n != "--vocab").ToArray();

    /// <summary>Adds the named flags and --set to a command.</summary>
    public static ConfigFlagBinder AddTo(Command command, IEnumerable<string> names)
    {
        var bound = new List<(ConfigFlag, Option)>();
        foreach (string name in names)
        {
            ConfigFlag flag = All.Single(f => f.Name == name);
            string description = flag.Key.Length == 0 ? flag.Description : $"{flag.Description} [{flag.Key}]";
            Option option = flag.Kind switch
            {
                FlagValue.Int => new Option<int?>(flag.Name) { Description = description },
                FlagValue.Long => new Option<long?>(flag.Name) { Description = description },
                FlagValue.Number => new Option<double?>(flag.Name) { Description = description },
                FlagValue.Switch => new Option<bool>(flag.Name) { Description = description },
                FlagValue.TextList => new Option<string[]>(flag.Name) { Description = description, AllowMultipleArgumentsPerToken = true },
                _ => new Option<string?>(flag.Name) { Description = description },
            };
            if (flag.Choices is { } choices) ((Option<string?>)option).AcceptOnlyFromAmong(choices);
            command.Options.Add(option);
            bound.Add((flag, option));
        }

        var set = new Option<string[]>("--set")
        {
            Description = "Set any config key, as in the file: --set optimizer.params.lr=3e-4 (repeatable; `pstar config` lists the keys). " +
                          "Applied after the file and the flags.",
        };
        command.Options.Add(set);
        return new ConfigFlagBinder(bound, set);
    }
}

/// <summary>The config flags of one command, bound to its parse result.</summary>
internal sealed class ConfigFlagBinder(IReadOnlyList<(ConfigFlag Flag, Option Option)> flags, Option<string[]> set)
{
    /// <summary>
    /// The keys the command line sets, flags first (in table order), then --set; each group with the words that gave it,
    /// so that a problem names the flag as typed.
    /// </summary>
    public List<(string Given, List<ConfigOverride> Overrides)> Groups(ParseResult r)
    {
        var groups = new List<(string, List<ConfigOverride>)>();
        void Add(string given, JsonNode? value, ConfigFlag flag) => groups.Add((given, [new ConfigOverride(flag.Key, value)]));
        foreach (var (flag, option) in flags)
        {
            switch (option)
            {
                case Option<bool> on when r.GetValue(on):
                    Add(flag.Name, JsonValue.Create(flag.SwitchValue), flag);
                    break;
                case Option<int?> whole when r.GetValue(whole) is int n:
                    Add($"{flag.Name} {n}", JsonValue.Create(n), flag);
                    break;
                case Option<long?> whole when r.GetValue(whole) is long n:
                    Add($"{flag.Name} {n}", JsonValue.Create(n), flag);
                    break;
                case Option<double?> number when r.GetValue(number) is double x:
                    Add($"{flag.Name} {x.ToString(System.Globalization.CultureInfo.InvariantCulture)}", JsonValue.Create(x), flag);
                    break;
                case Option<string[]> list when r.GetValue(list) is { Length: > 0 } items:
                    Add($"{flag.Name} {string.Join(' ', items)}", new JsonArray(items.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()), flag);
                    break;
                case Option<string?> text when r.GetValue(text) is string value && flag.Expand is not null:
                    groups.Add(($"{flag.Name} {value}", flag.Expand(value).ToList()));
                    break;
                case Option<string?> text when r.GetValue(text) is string value:
                    Add($"{flag.Name} {value}", ValueOf(flag, value), flag);
                    break;
            }
        }

        foreach (string assignment in r.GetValue(set) ?? [])
            groups.Add(($"--set {assignment}", [ConfigLoader.ParseAssignment(assignment)]));
        return groups;
    }

    /// <summary>
    /// Applies the command line's keys onto <paramref name="c"/>, reporting every problem at once; returns them, so that
    /// callers can ask what was given.
    /// </summary>
    public List<ConfigOverride> Apply(ParseResult r, TrainingConfig c, ICollection<string> warnings)
    {
        var groups = Groups(r);
        var errors = groups.SelectMany(g => g.Overrides.Select(o => (o.Key, g.Given)))
            .GroupBy(x => x.Key)
            .Where(g => g.Count() > 1)
            .Select(g => $"{g.Key} is set more than once on the command line ({string.Join(", ", g.Select(x => x.Given))}); keep one.")
            .ToList();
        if (errors.Count == 0)
            foreach (var (given, overrides) in groups)
            {
                try { ConfigLoader.ApplyOverrides(c, overrides, given, warnings); }
                catch (ConfigException e) { errors.Add(e.Message); }
            }
        if (errors.Count == 1) throw new ConfigException(errors[0]);
        if (errors.Count > 1)
            throw new ConfigException($"command line: {errors.Count} problems:" + string.Concat(errors.Select(e => $"{Environment.NewLine}  - {e}")));
        return groups.SelectMany(g => g.Overrides).ToList();
    }

    private static JsonNode? ValueOf(ConfigFlag flag, string text)
    {
        if (flag.Kind == FlagValue.Text) return JsonValue.Create(text);
        // "0.9,0.95" for a pair reads naturally on a command line; JSON's [0.9, 0.95] works too.
        if (flag.Key == "optimizer.params.betas" && !text.TrimStart().StartsWith('[')) text = $"[{text}]";
        return ConfigLoader.ValueFromText(text);
    }
}
