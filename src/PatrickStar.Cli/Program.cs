using PatrickStar.Cli.Commands;

namespace PatrickStar.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var parsed = PstarCommandLine.Parse(args);
        return parsed.Errors.Count > 0 ? PstarCommandLine.ReportErrors(parsed) : parsed.Invoke();
    }
}
