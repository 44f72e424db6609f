namespace PatrickStar.Cli.Commands;

/// <summary>The examples section every command's `--help` ends its description with.</summary>
internal static class Examples
{
    public static string Format(params string[] commandLines) =>
        "\n\nExamples:\n" + string.Join("\n", commandLines.Select(l => "  " + l));
}
