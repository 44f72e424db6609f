using System.CommandLine;
using System.Text.Json.Nodes;
using PatrickStar.Config;

namespace PatrickStar.Cli.Commands;

/// <summary>How a flag's text becomes the JSON value of its key.</summary>
internal enum FlagValue
{
    /// <summary>JSON when the text reads as JSON (3e-4, true), else a string (2GiB, cuda:0): as --set.</summary>
    Json,
    /// <summary>Always a string (presets and paths: "--save-dir 10" is a folder named 10).</summary>
    Text,
    /// <summary>Several strings: an array.</summary>
    TextList,
    /// <summary>A switch without a value: sets its key to <see cref="ConfigFlag.SwitchValue"/>.</summary>
    Switch,
}

/// <summary>One command-line flag bound to a config key: its text is read and checked exactly as that key in a file.</summary>
internal sealed record ConfigFlag(string Name, string Key, string Description, FlagValue Kind = FlagValue.Json, string[]? Choices = null)
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
        new("--dropout", "model.dropout", "Dropout probability in [0, 1) (default: the preset's)."),
        new("--data", "data.files", "Text files or folders of *.txt to train on (UTF-8). Default: the built-in generated corpus.", FlagValue.TextList),
        new("--val-fraction", "data.validation_fraction", "Fraction of the tokens (from the end) held out for validation, in (0, 0.5]."),
        new("--steps", "steps", "Optimizer steps to run."),
        new("--batch", "train_micro_batch_size_per_gpu", "Micro-batch size (sequences per forward pass)."),
        new("--accum", "gradient_accumulation_steps", "Gradient accumulation steps (micro-batches per optimizer step)."),
        new("--seq", "seq_len", "Sequence length in tokens (at most the model's context length)."),
        new("--precision", "", "fp32, bf16 (bf16 compute, fp32 master weights), bf16-fp32 (bf16 parameters and gradients, fp32 activations and matmuls: " +
                               "14 B/param at fp32 speed on CPUs without fast bf16) or fp16 (fp16 compute with loss scaling: for GPUs).",
            Choices: PrecisionNames.All) { Expand = name => PrecisionNames.Overrides(PrecisionNames.Parse(name)) },
        new("--lr", "optimizer.params.lr", "Peak learning rate."),
        new("--min-lr-ratio", "scheduler.params.min_lr_ratio", "The schedule's floor as a fraction of the peak rate, in [0, 1] (WarmupCosine, WarmupLinear)."),
        new("--warmup", "scheduler.params.warmup_steps", "Warmup steps of the learning-rate schedule."),
        new("--weight-decay", "optimizer.params.weight_decay", "Weight decay (decoupled for AdamW)."),
        new("--betas", "optimizer.params.betas", "Adam's beta1,beta2, e.g. 0.9,0.95."),
        new("--grad-clip", "gradient_clipping", "Global gradient-norm clipping threshold (0: none)."),
        new("--seed", "seed", "Seed for initialisation, dropout and batch sampling."),
        new("--eval-interval", "eval.interval", "Validate every N steps (0: only at the end)."),
        new("--device", "device", "auto, cpu, cuda or cuda:N.", FlagValue.Text),
        new("--threads", "threads", "Torch intra-op threads (0: one per core)."),
        new("--engine", "engine", "plain (everything on the device) or chunked (PatrickStar's chunk engine).", FlagValue.Text, ConfigLoader.Engines),
        new("--device-memory", "device_memory", "Chunked engine: device budget, e.g. 1GiB (default: a quarter of available memory on a CPU device)."),
        new("--host-memory", "host_memory", "Chunked engine: host budget for chunks, e.g. 16GiB (default: the rest of available memory)."),
        new("--chunk-size", "chunk_size", "Chunked engine: elements per chunk, e.g. 4M (default: the size that wastes least)."),
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
        "--accum", "--checkpointing", "--precision", "--engine", "--placement", "--dp-mode", "--chunk-size",
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
            Option option = flag.Kind switch
            {
                FlagValue.Switch => new Option<bool>(flag.Name) { Description = flag.Description },
                FlagValue.TextList => new Option<string[]>(flag.Name) { Description = flag.Description, AllowMultipleArgumentsPerToken = true },
                _ => new Option<string?>(flag.Name) { Description = flag.Description },
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
    /// <summary>The keys the command line sets, flags first (in table order), then --set.</summary>
    public List<ConfigOverride> Overrides(ParseResult r)
    {
        var result = new List<ConfigOverride>();
        foreach (var (flag, option) in flags)
        {
            switch (option)
            {
                case Option<bool> on when r.GetValue(on):
                    result.Add(new ConfigOverride(flag.Key, JsonValue.Create(flag.SwitchValue)));
                    break;
                case Option<string[]> list when r.GetValue(list) is { Length: > 0 } items:
                    result.Add(new ConfigOverride(flag.Key, new JsonArray(items.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray())));
                    break;
                case Option<string?> text when r.GetValue(text) is string value:
                    if (flag.Expand is not null) result.AddRange(flag.Expand(value));
                    else result.Add(new ConfigOverride(flag.Key, ValueOf(flag, value)));
                    break;
            }
        }

        result.AddRange((r.GetValue(set) ?? []).Select(ConfigLoader.ParseAssignment));
        return result;
    }

    /// <summary>Applies the command line's keys onto <paramref name="c"/>; returns them, so that callers can ask what was given.</summary>
    public List<ConfigOverride> Apply(ParseResult r, TrainingConfig c, ICollection<string> warnings)
    {
        var overrides = Overrides(r);
        ConfigLoader.ApplyOverrides(c, overrides, "command line", warnings);
        return overrides;
    }

    private static JsonNode? ValueOf(ConfigFlag flag, string text)
    {
        if (flag.Kind == FlagValue.Text) return JsonValue.Create(text);
        // "0.9,0.95" for a pair reads naturally on a command line; JSON's [0.9, 0.95] works too.
        if (flag.Key == "optimizer.params.betas" && !text.TrimStart().StartsWith('[')) text = $"[{text}]";
        return ConfigLoader.ValueFromText(text);
    }
}
