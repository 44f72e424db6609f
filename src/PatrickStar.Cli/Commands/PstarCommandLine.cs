using System.CommandLine;
using System.Text.RegularExpressions;

namespace PatrickStar.Cli.Commands;

/// <summary>The pstar command tree, and its parse errors as one line each that names the flag, the value and the expected form.</summary>
public static partial class PstarCommandLine
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "PatrickStar.NET: train GPT language models whose model data does not fit in the compute device's memory." + Examples.Format(
                "pstar train --model gpt2-tiny --steps 50",
                "pstar models",
                "pstar estimate --model gpt2 --engine chunked --device-memory 2GiB",
                "pstar <command> --help"));
        root.Subcommands.Add(TrainCommand.Build());
        root.Subcommands.Add(ModelsCommand.Build());
        root.Subcommands.Add(EstimateCommand.Build());
        root.Subcommands.Add(BenchCommand.Build());
        root.Subcommands.Add(ConfigCommand.Build());
        root.Subcommands.Add(ExportCommand.Build());
        root.Subcommands.Add(EvalCommand.Build());
        root.Subcommands.Add(GenerateCommand.Build());
        root.Subcommands.Add(PlotCommand.Build());
        root.Subcommands.Add(LaunchCommand.Build());
        root.Subcommands.Add(LaunchCommand.BuildCommCheck());
        root.Subcommands.Add(CudaCheckCommand.Build());
        Examples.Install(root);
        return root;
    }

    public static ParseResult Parse(IReadOnlyList<string> args) => Build().Parse(args);

    /// <summary>Prints each parse error as one line (no help dump) and returns the user-error exit code.</summary>
    public static int ReportErrors(ParseResult parsed)
    {
        string command = string.Join(" ", new[] { "pstar" }.Concat(CommandPath(parsed.CommandResult.Command, parsed.RootCommandResult.Command)));
        foreach (var error in parsed.Errors)
            Console.Error.WriteLine($"error: {Rewrite(error.Message)} (see `{command} --help`)");
        return CommandErrors.UserError;
    }

    private static IEnumerable<string> CommandPath(Command command, Command root)
    {
        var names = new List<string>();
        for (Symbol? s = command; s is Command c && c != root; s = c.Parents.FirstOrDefault())
            names.Insert(0, c.Name);
        return names;
    }

    /// <summary>System.CommandLine's "Cannot parse argument 'abc' for option '--lr' as expected type 'System.Nullable`1[System.Double]'" in words.</summary>
    public static string Rewrite(string message)
    {
        var m = CannotParse().Match(message);
        if (!m.Success) return message.TrimEnd('.');
        string value = m.Groups["value"].Value, option = m.Groups["option"].Value;
        string type = m.Groups["type"].Value;
        var inner = NullableOf().Match(type);
        if (inner.Success) type = inner.Groups[1].Value;
        string expected = type switch
        {
            "System.Int32" or "System.Int64" => "a whole number, e.g. 8",
            "System.Double" or "System.Single" => "a number, e.g. 3e-4",
            "System.Boolean" => "true or false",
            _ => $"a value of type {type[(type.LastIndexOf('.') + 1)..]}",
        };
        return $"{option} '{value}' is not valid: {option} takes {expected}";
    }

    [GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for (?:option|argument) '(?<option>[^']*)' as expected type '(?<type>[^']*)'", RegexOptions.CultureInvariant)]
    private static partial Regex CannotParse();

    [GeneratedRegex(@"^System\.Nullable`1\[(.*)\]$", RegexOptions.CultureInvariant)]
    private static partial Regex NullableOf();
}
