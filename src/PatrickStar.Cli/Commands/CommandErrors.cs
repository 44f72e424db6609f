using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>Turns the errors a user can cause into one clear message and an exit code; the rest get a full report.</summary>
public static class CommandErrors
{
    public const int UserError = 1;
    public const int InternalError = 70;

    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ConfigException or DataException or PatrickStar.Profiling.InsufficientMemoryException or TorchLoadException
                                      or TrainingDivergedException or PatrickStar.Memory.TierBudgetExceededException or ArgumentException or FileNotFoundException
                                      or DirectoryNotFoundException or UnauthorizedAccessException
                                      or PatrickStar.Checkpoints.ModelFileException
                                      or ProfileFormatException or InvalidDataException
                                      or PatrickStar.Distributed.MpiUnavailableException or PatrickStar.Distributed.RankMismatchException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return UserError;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error: {e}");
            return InternalError;
        }
    }

    /// <summary>Escapes text for Spectre markup.</summary>
    public static string Esc(string s) => Markup.Escape(s);
}
