using System.CommandLine;
using PatrickStar.Cli.Commands;

namespace PatrickStar.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand(
            "PatrickStar.NET: train GPT language models whose model data does not fit in the compute device's memory.");
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
        return root.Parse(args).Invoke();
    }
}
