using System.CommandLine;
namespace PatrickStar.Cli.Commands;
public static class BenchCommand
{
    public static Command Build() => new Command("bench", "Benchmarks (placeholder being written)");
}
