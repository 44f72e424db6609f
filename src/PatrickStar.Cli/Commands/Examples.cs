using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.Runtime.CompilerServices;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// The examples section at the end of every command's `--help`. A command declares them at the end of its description
/// (<see cref="Format"/>); <see cref="Install"/> moves them out of the description, which also heads the parent's
/// list of commands, into a section of their own after the options.
/// </summary>
internal static class Examples
{
    private const string Heading = "\n\nExamples:\n";
    private static readonly ConditionalWeakTable<Command, string> Sections = new();

    public static string Format(params string[] commandLines) =>
        Heading + string.Join("\n", commandLines.Select(l => "  " + l));

    /// <summary>For <paramref name="root"/> and every command below it: examples out of the description, printed by help.</summary>
    public static void Install(RootCommand root)
    {
        foreach (var command in Descendants(root))
        {
            int at = command.Description?.IndexOf(Heading, StringComparison.Ordinal) ?? -1;
            if (at < 0) continue;
            Sections.AddOrUpdate(command, command.Description![(at + Heading.Length)..]);
            command.Description = command.Description[..at];
        }
        var help = root.Options.OfType<HelpOption>().Single();
        if (help.Action is HelpAction standard) help.Action = new HelpWithExamples(standard);
    }

    /// <summary>The standard help, then the command's examples.</summary>
    private sealed class HelpWithExamples(HelpAction standard) : SynchronousCommandLineAction
    {
        // As the standard help: `pstar export --help` shows help instead of "--out is required".
        public override bool ClearsParseErrors => standard.ClearsParseErrors;

        public override int Invoke(ParseResult parseResult)
        {
            int code = standard.Invoke(parseResult);
            if (Sections.TryGetValue(parseResult.CommandResult.Command, out var lines))
            {
                var output = parseResult.InvocationConfiguration.Output;
                output.WriteLine("Examples:");
                output.WriteLine(lines);
                output.WriteLine();
            }
            return code;
        }
    }

    /// <summary>The examples of a command (its lines, each indented), or null; for tests.</summary>
    public static string? Of(Command command) => Sections.TryGetValue(command, out var lines) ? lines : null;

    private static IEnumerable<Command> Descendants(Command command) =>
        new[] { command }.Concat(command.Subcommands.SelectMany(Descendants));
}
