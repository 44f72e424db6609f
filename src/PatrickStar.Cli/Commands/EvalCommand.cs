using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;
using PatrickStar.Training;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar eval`: mean next-token loss and perplexity of a model over text files.</summary>
public static class EvalCommand
{
    public static Command Build()
    {
        var initFrom = ModelFiles.InitFrom();
        var checkpoint = ModelFiles.Checkpoint();
        var heads = ModelFiles.Heads();
        var device = ModelFiles.Device();
        var data = new Option<string[]>("--data")
        {
            Description = "Data files (.txt, .jsonl, .parquet, .bin) or folders of them to evaluate on (with --split all, every token; with train or val, " +
                          "that part of each file). Default with --split train|val: the checkpoint's own data.",
            AllowMultipleArgumentsPerToken = true,
        };
        var split = new Option<string>("--split")
        {
            Description = "all (every token of --data), or train / val: a --checkpoint run's own split, with the data and " +
                          "validation_fraction recorded in the checkpoint.",
            DefaultValueFactory = _ => "all",
        };
        split.AcceptOnlyFromAmong("all", "train", "val");
        var batch = new Option<int>("--batch") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 4 };
        var seq = new Option<int?>("--seq") { Description = "Tokens per window (default: the model's context length, or less when the data is shorter)." };
        var maxBatches = new Option<int?>("--max-batches") { Description = "Stop after this many batches (default: every window)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text." };
        var dataFlags = new DataFlags();

        var command = new Command("eval", "Evaluate a model: mean next-token cross-entropy and perplexity = exp(loss) over every consecutive, " +
                                          "non-overlapping window of the data (deterministic; no dropout)." + Examples.Format(
                                              "pstar eval --init-from gpt2/model.safetensors --data books/",
                                              "pstar eval --checkpoint runs/a --split val        # the run's own validation split",
                                              "pstar eval --checkpoint runs/a --data more.txt --json"));
        foreach (var o in new Option[] { initFrom, checkpoint, heads, data, split, batch, seq, maxBatches, device, json }) command.Options.Add(o);
        dataFlags.AddTo(command);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            string part = r.GetValue(split)!;
            var init = r.GetValue(initFrom);
            string? initFolder = init is not null && Directory.Exists(init.FullName) ? init.FullName : null;
            var (dataset, tokenizer) = Data(r.GetValue(data), part, r.GetValue(checkpoint), section =>
            {
                dataFlags.Apply(r, section);
                return Tokenizers.Resolve(section.Tokenizer, initFolder);
            });
            var (model, dev, source) = ModelFiles.Load(init, r.GetValue(checkpoint), r.GetValue(heads), r.GetValue(device));
            using (model)
            {
                Tokenizers.EnsureFitsModel(tokenizer, model.VocabSize, source);
                var tokens = dataset.Tokens(part == "val" ? Split.Validation : Split.Train);
                int vocab = model.VocabSize;
                foreach (int t in tokens)
                    if (t >= vocab)
                        throw new DataException($"the data has token id {t}, outside the model's vocabulary of {vocab:N0} (vocab_size of {source}); " +
                                                $"the model was not trained with tokenizer {tokenizer.Id}: give its own with --tokenizer.");
                int context = model.ContextLength;
                int s = r.GetValue(seq) ?? Math.Min(context, Math.Max(1, tokens.Length - 1));
                if (s > context)
                    throw new ArgumentException($"--seq {s} exceeds the model's context length n_positions = {context}; use --seq {context} or less.");
                var result = SequentialEvaluation.Run(model.Network, tokens, r.GetValue(batch), s, dev, r.GetValue(maxBatches));
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                    {
                        ["model"] = source, ["data"] = dataset.Description, ["split"] = part, ["loss"] = result.MeanLoss, ["perplexity"] = result.Perplexity,
                        ["tokens"] = result.Tokens, ["windows"] = result.Windows, ["seq"] = s, ["batches"] = result.Batches,
                    }));
                }
                else
                {
                    Console.WriteLine($"model:      {source}");
                    Console.WriteLine($"data:       {dataset.Description}{(part == "all" ? "" : $", {part} split")} ({result.Tokens:N0} tokens predicted in {result.Windows:N0} windows of {s})");
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss:       {result.MeanLoss:F6}"));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"perplexity: {result.Perplexity:F4}"));
                }
                return 0;
            }
        }));
        return command;
    }

    /// <summary>
    /// The text to evaluate: with --split all, every token of --data; with train or val, the checkpoint's own run split the
    /// same way it was trained (its data, unless --data replaces it, and its validation fraction).
    /// </summary>
    /// <summary>
    /// The data to evaluate and its tokenizer: --data whole (split all), or a checkpoint run's own split with its recorded
    /// data keys; <paramref name="prepare"/> applies the data flags to the section and resolves its tokenizer.
    /// </summary>
    private static (TokenDataset, ITextTokenizer) Data(string[]? files, string split, string? checkpoint, Func<DataSection, ITextTokenizer> prepare)
    {
        if (split == "all")
        {
            if (files is not { Length: > 0 }) throw new ArgumentException("--data is required with --split all: give the text files or folders to evaluate on.");
            var own = new TrainingConfig();
            own.Data.Files = files.ToList();
            var allTokenizer = prepare(own.Data);
            return (TokenDataset.FromFiles(files, allTokenizer, validationFraction: 0.0, GptRun.DataOptionsOf(own)), allTokenizer);
        }
        if (checkpoint is null)
            throw new ArgumentException($"--split {split} takes the run's own split from a training checkpoint: give --checkpoint DIR (or --split all with --data).");
        var state = TrainingCheckpoint.Inspect(checkpoint).State;
        var config = ConfigLoader.Parse(state.ConfigJson, $"the config recorded in {checkpoint}");
        if (files is { Length: > 0 }) config.Data.Files = files.ToList();
        var tokenizer = prepare(config.Data);
        return (GptRun.LoadData(config, tokenizer), tokenizer);
    }
}
