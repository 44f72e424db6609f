using PatrickStar.Cli.Commands;
using Spectre.Console;

namespace PatrickStar.Cli;

public static class Program
{
    /// <summary>Columns a table may take when the output is a pipe or a file: wide enough that no cell wraps.</summary>
    public const int RedirectedWidth = 4096;

    public static int Main(string[] args)
    {
        // Spectre.Console assumes 80 columns without a terminal, which wraps table cells mid-word in a log
        // ("gpt2-tin / y"); tables size to their content, so a wide profile prints every row on one line.
        // A rank under mpirun writes to a pseudo-terminal of mpirun's that ends up in the job's merged log: the same.
        if (Console.IsOutputRedirected || PatrickStar.Distributed.Communicators.LauncherSize() is not null)
            AnsiConsole.Profile.Width = RedirectedWidth;
        var parsed = PstarCommandLine.Parse(args);
        return parsed.Errors.Count > 0 ? PstarCommandLine.ReportErrors(parsed) : parsed.Invoke();
    }
}
