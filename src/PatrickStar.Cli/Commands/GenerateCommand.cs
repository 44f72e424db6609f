using System.CommandLine;
using PatrickStar.Data;
using PatrickStar.Models.Gpt;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar generate`: sample text from a model, streamed to stdout as it is produced.</summary>
public static class GenerateCommand
{
    public static Command Build()
    {
        var initFrom = ModelFiles.InitFrom();
        var checkpoint = ModelFiles.Checkpoint();
        var heads = ModelFiles.Heads();
        var device = ModelFiles.Device();
        var prompt = new Option<string>("--prompt") { Description = "The text to continue.", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 100 };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature; 0 is greedy (always the most likely token).", DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the K most likely tokens only (0: off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Sample among the most likely tokens whose probabilities sum to P (1: off).", DefaultValueFactory = _ => 1.0 };
        var tokenizer = new DataFlags().Tokenizer;
        var seed = new Option<long>("--seed") { Description = "Seed of the sampling; the same seed gives the same text.", DefaultValueFactory = _ => 0 };
        var noCache = new Option<bool>("--no-cache") { Description = "Re-run the whole window for every token instead of using the key/value cache (same tokens, slower; for comparison)." };

        var command = new Command("generate", "Generate text with a model (GPT or LLaMA): its folder's tokenizer (or --tokenizer, default gpt2), temperature / top-k / top-p sampling, " +
                                              "a key/value cache, the window cropped to the model's context length; stops at <|endoftext|> or --max-tokens." + Examples.Format(
                                                  "pstar generate --checkpoint runs/a --prompt \"Once upon a time\"",
                                                  "pstar generate --init-from gpt2/model.safetensors --prompt \"The cat\" --temperature 0"));
        foreach (var o in new Option[] { initFrom, checkpoint, heads, prompt, maxTokens, temperature, topK, topP, seed, noCache, device, tokenizer }) command.Options.Add(o);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(topP), r.GetValue(seed));
            options.Validate();
            var (model, dev, source) = ModelFiles.Load(r.GetValue(initFrom), r.GetValue(checkpoint), r.GetValue(heads), r.GetValue(device));
            using (model)
            {
                var textTokenizer = ModelFiles.Tokenizer(r.GetValue(tokenizer), r.GetValue(initFrom), r.GetValue(checkpoint), model, source);
                string text = r.GetValue(prompt)!;
                var output = Console.Out;
                output.Write(text);
                output.Flush();
                new TextGenerator(model, dev, useCache: !r.GetValue(noCache)).Generate(textTokenizer, text, r.GetValue(maxTokens), options, piece =>
                {
                    output.Write(piece);
                    output.Flush();
                });
                output.WriteLine();
                return 0;
            }
        }));
        return command;
    }
}
