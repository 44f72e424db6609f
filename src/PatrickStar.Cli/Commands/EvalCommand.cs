using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using PatrickStar.Data;
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
            Description = "Data files (.txt, .jsonl, .parquet, .bin) or folders of them to evaluate on; all of their text is used.",
            AllowMultipleArgumentsPerToken = true,
            Required = true,
        };
        var batch = new Option<int>("--batch") { Description = "Windows per forward pass.", DefaultValueFactory = _ => 4 };
        var seq = new Option<int?>("--seq") { Description = "Tokens per window (default: the model's context length, or less when the data is shorter)." };
        var maxBatches = new Option<int?>("--max-batches") { Description = "Stop after this many batches (default: every window)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of text." };
        var dataFlags = new DataFlags();

        var command = new Command("eval", "Evaluate a model: mean next-token cross-entropy and perplexity = exp(loss) over every consecutive, " +
                                          "non-overlapping window of the data (deterministic; no dropout).");
        foreach (var o in new Option[] { initFrom, checkpoint, heads, data, batch, seq, maxBatches, device, json }) command.Options.Add(o);
        dataFlags.AddTo(command);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            var dataConfig = new PatrickStar.Config.DataSection();
            dataFlags.Apply(r, dataConfig);
            var init = r.GetValue(initFrom);
            var tokenizer = Tokenizers.Resolve(dataConfig.Tokenizer, init is not null && Directory.Exists(init.FullName) ? init.FullName : null);
            var options = new DataOptions { TextField = dataConfig.TextField, BinDType = dataConfig.BinDType, CacheDir = dataConfig.CacheDir };
            var dataset = TokenDataset.FromFiles(r.GetValue(data)!, tokenizer, validationFraction: 0.0, options);
            var (model, dev, source) = ModelFiles.Load(init, r.GetValue(checkpoint), r.GetValue(heads), r.GetValue(device));
            using (model)
            {
                Tokenizers.EnsureFitsModel(tokenizer, model.VocabSize, source);
                var tokens = dataset.Tokens(Split.Train);
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
                        ["model"] = source, ["data"] = dataset.Description, ["loss"] = result.MeanLoss, ["perplexity"] = result.Perplexity,
                        ["tokens"] = result.Tokens, ["windows"] = result.Windows, ["seq"] = s, ["batches"] = result.Batches,
                    }));
                }
                else
                {
                    Console.WriteLine($"model:      {source}");
                    Console.WriteLine($"data:       {dataset.Description} ({result.Tokens:N0} tokens predicted in {result.Windows:N0} windows of {s})");
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss:       {result.MeanLoss:F6}"));
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"perplexity: {result.Perplexity:F4}"));
                }
                return 0;
            }
        }));
        return command;
    }
}
