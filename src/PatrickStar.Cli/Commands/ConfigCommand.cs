using System.CommandLine;
using PatrickStar.Config;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar config`: every config key with its type, default and meaning; `--check FILE` validates a file.</summary>
public static class ConfigCommand
{
    public static Command Build()
    {
        var check = new Option<FileInfo?>("--check") { Description = "Validate this config file and report every problem in it." };
        var ranks = new Option<int?>("--ranks") { Description = "With --check: the data-parallel ranks the file is for (train_batch_size = micro batch x accumulation x ranks; default 1)." };
        var markdown = new Option<bool>("--markdown") { Description = "Print the reference as a Markdown table." };
        var command = new Command("config", "Show the config file reference (JSON keys, types, defaults), or check a config file." +
                                            Examples.Format("pstar config", "pstar config --check run.json", "pstar config --markdown > config.md"));
        command.Options.Add(check);
        command.Options.Add(ranks);
        command.Options.Add(markdown);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            if (r.GetValue(check) is FileInfo file)
            {
                var warnings = new List<string>();
                var config = ConfigLoader.Load(file.FullName, warnings);
                ConfigLoader.Validate(config, file.Name, r.GetValue(ranks) ?? 1);
                foreach (string warning in warnings) Console.Error.WriteLine($"warning: {warning}");
                AnsiConsole.MarkupLine($"[green]{CommandErrors.Esc(file.Name)} is valid.[/]");
                return 0;
            }
            if (r.GetValue(markdown))
            {
                Console.WriteLine("| key | type | default | meaning |");
                Console.WriteLine("|---|---|---|---|");
                foreach (var (key, type, def, meaning) in ConfigLoader.Reference)
                    Console.WriteLine($"| `{key}` | {type.Replace("|", "\\|")} | `{def}` | {meaning.Replace("|", "\\|")} |");
                return 0;
            }
            var table = new Table().Border(TableBorder.Rounded);
            foreach (var c in new[] { "key", "type", "default", "meaning" }) table.AddColumn(c);
            foreach (var (key, type, def, meaning) in ConfigLoader.Reference)
                table.AddRow(CommandErrors.Esc(key), CommandErrors.Esc(type), CommandErrors.Esc(def), CommandErrors.Esc(meaning));
            AnsiConsole.Write(table);
            return 0;
        }));
        return command;
    }
}
