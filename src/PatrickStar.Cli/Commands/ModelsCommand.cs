using System.CommandLine;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar models`: the presets with their sizes and model-data bytes.</summary>
public static class ModelsCommand
{
    public static Command Build()
    {
        var command = new Command("models", "List the model presets with parameter counts and the model data they need (16 B/param: " +
                                            "bf16 param and grad, fp32 master, momentum and variance)." +
                                            Examples.Format("pstar models", "pstar models | grep gpt2-medium"));
        command.SetAction(_ => CommandErrors.Run(() =>
        {
            var table = new Table().Border(TableBorder.Rounded);
            foreach (var c in new[] { "preset", "layers", "hidden", "heads", "context", "parameters", "model data", "" })
                table.AddColumn(new TableColumn(c).RightAligned());
            table.Columns[0].LeftAligned();
            table.Columns[^1].LeftAligned();
            foreach (var p in ModelZoo.Presets)
            {
                var m = p.Config;
                table.AddRow(p.Name, $"{m.Layers}", $"{m.Hidden}", $"{m.Heads}", $"{m.ContextLength}",
                    $"{m.ParameterCount:N0}", Bytes.Format(m.ModelDataBytes), CommandErrors.Esc(p.Description));
            }
            foreach (var p in PatrickStar.Models.Llama.LlamaZoo.Presets)
            {
                var m = p.Config;
                table.AddRow(p.Name, $"{m.Layers}", $"{m.Hidden}", $"{m.Heads} ({m.KvHeads} kv)", $"{m.ContextLength}",
                    $"{m.ParameterCount:N0}", Bytes.Format(m.ParameterCount * 16), CommandErrors.Esc(p.Description));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine($"[grey]The GPT presets and llama-tiny use GPT-2's vocabulary of {GptConfig.Gpt2VocabSize:N0} tokens. Sizes can be overridden: pstar train --model gpt2 --layers 6.[/]");
            return 0;
        }));
        return command;
    }
}
