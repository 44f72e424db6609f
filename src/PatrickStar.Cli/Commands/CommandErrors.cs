using System.Text.RegularExpressions;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// Turns every error into one line and an exit code. Errors a user can cause name the problem and the fix; anything
/// else is a bug: one line naming a crash-log file that holds the full report (a stack trace never reaches the console).
/// </summary>
public static partial class CommandErrors
{
    public const int UserError = 1;
    public const int InternalError = 70;

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e)
        {
            var (line, user) = Describe(e);
            Console.Error.WriteLine(line);
            return user ? UserError : InternalError;
        }
    }

    /// <summary>The one line to print for <paramref name="e"/>, and whether the user can fix it (else a crash log was written).</summary>
    public static (string Line, bool UserError) Describe(Exception e)
    {
        if (IsUserError(e)) return ($"error: {UserMessage(e)}", true);
        if (DiskFull.Describe(e) is string full) return ($"error: {full}", true);
        return ($"internal error: {OneLine(e.Message)} ({e.GetType().Name}; a bug: the full report is in {WriteCrashLog(e)}; please include it when reporting)", false);
    }

    private static bool IsUserError(Exception e) =>
        e is ConfigException or DataException or PatrickStar.Profiling.InsufficientMemoryException or TorchLoadException
            or TrainingDivergedException or PatrickStar.Memory.TierBudgetExceededException or ArgumentException or FileNotFoundException
            or DirectoryNotFoundException or UnauthorizedAccessException or OutputPathException
            or PatrickStar.Checkpoints.ModelFileException
            or PatrickStar.Tiers.DiskTierRefusedException or PatrickStar.Tiers.DiskIoException // named chunk, file and OS error
            or ProfileFormatException or InvalidDataException
            or PatrickStar.Distributed.MpiUnavailableException or PatrickStar.Distributed.RankMismatchException
            or PatrickStar.Distributed.CommunicatorAbortedException; // another rank failed and said why

    /// <summary>The message without .NET's " (Parameter 'name')" suffix, which names a code parameter the user never saw.</summary>
    public static string UserMessage(Exception e) => ParameterSuffix().Replace(e.Message, "");

    [GeneratedRegex(@" ?\(Parameter '[^']*'\)", RegexOptions.CultureInvariant)]
    private static partial Regex ParameterSuffix();

    private static string OneLine(string text)
    {
        string first = text.Split('\n', 2)[0].TrimEnd('\r', '.', ' ');
        return first.Length == 0 ? "(no message)" : first;
    }

    /// <summary>Writes the full report of an unexpected exception to pstar-crash-PID.log in the temp folder; returns its path.</summary>
    public static string WriteCrashLog(Exception e)
    {
        string path = Path.Combine(Path.GetTempPath(), $"pstar-crash-{Environment.ProcessId}.log");
        try
        {
            File.AppendAllText(path, $"pstar {string.Join(" ", Environment.GetCommandLineArgs().Skip(1))}{Environment.NewLine}" +
                                     $"{DateTime.UtcNow:O} pid {Environment.ProcessId}{Environment.NewLine}{e}{Environment.NewLine}{Environment.NewLine}");
            return path;
        }
        catch (Exception) // the report cannot be written: say so on the same line instead of losing it silently
        {
            return $"(nowhere: {path} could not be written)";
        }
    }

    /// <summary>Escapes text for Spectre markup.</summary>
    public static string Esc(string s) => Markup.Escape(s);
}
