using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// One table of figures, written once and rendered twice (Spectre on the console, Markdown in report.md), so
/// that the console and the report cannot disagree.
/// </summary>
public sealed class ReportTable
{
    private readonly List<(string Name, bool Right)> columns = new();
    private readonly List<string[]> rows = new();

    public ReportTable(string title) => Title = title;

    public string Title { get; }
    public List<string> Notes { get; } = new();
    public IReadOnlyList<string[]> Rows => rows;

    /// <summary>Adds a column; numbers are right-aligned.</summary>
    public ReportTable Column(string name, bool right = true)
    {
        columns.Add((name, right));
        return this;
    }

    public void Row(params string[] cells)
    {
        if (cells.Length != columns.Count)
            throw new InvalidOperationException($"table '{Title}': a row of {cells.Length} cells for {columns.Count} columns.");
        rows.Add(cells);
    }

    public void WriteConsole()
    {
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(Title));
        foreach (var (name, right) in columns)
        {
            var column = new TableColumn(Markup.Escape(name));
            table.AddColumn(right ? column.RightAligned() : column);
        }
        foreach (var row in rows) table.AddRow(row.Select(Markup.Escape).ToArray());
        AnsiConsole.Write(table);
        foreach (var note in Notes) AnsiConsole.MarkupLine($"[grey]{Markup.Escape(note)}[/]");
    }

    public void WriteMarkdown(StringBuilder md)
    {
        md.AppendLine($"### {Title}").AppendLine();
        md.AppendLine("| " + string.Join(" | ", columns.Select(c => Cell(c.Name))) + " |");
        md.AppendLine("|" + string.Join("|", columns.Select(c => c.Right ? "---:" : "---")) + "|");
        foreach (var row in rows) md.AppendLine("| " + string.Join(" | ", row.Select(Cell)) + " |");
        md.AppendLine();
        foreach (var note in Notes) md.AppendLine($"- {note}");
        if (Notes.Count > 0) md.AppendLine();
    }

    // A pipe would end the cell early; a line break would end the row.
    private static string Cell(string text) => text.Replace("|", "\\|").Replace("\r", "").Replace("\n", " ");
}

/// <summary>
/// What one `pstar bench` sitting produced: every figure and raw timing as JSON (report.json), and the same
/// figures as Markdown tables with the command line, the date and the machine (report.md).
/// </summary>
public sealed class BenchReport
{
    public const string Format = "pstar-bench";
    public const int Version = 1;

    private readonly List<(string Part, ReportTable Table)> tables = new();

    public BenchReport(string commandLine, MachineFacts machine, IReadOnlyList<string> parts)
    {
        CommandLine = commandLine;
        Machine = machine;
        Date = DateTime.UtcNow;
        Json = new JsonObject
        {
            ["format"] = Format,
            ["version"] = Version,
            ["command_line"] = commandLine,
            ["date_utc"] = Date.ToString("O"),
            ["parts"] = new JsonArray(parts.Select(p => (JsonNode)p).ToArray()),
            ["machine"] = machine.ToJson(),
        };
    }

    public string CommandLine { get; }
    public MachineFacts Machine { get; }
    public DateTime Date { get; }

    /// <summary>The report.json root; each part adds its own object under its name.</summary>
    public JsonObject Json { get; }

    /// <summary>Shows the table on the console now and keeps it for report.md.</summary>
    public void Add(string part, ReportTable table)
    {
        table.WriteConsole();
        tables.Add((part, table));
    }

    public string ToMarkdown()
    {
        var md = new StringBuilder();
        md.AppendLine("# pstar bench report").AppendLine();
        md.AppendLine($"- command: `{CommandLine}`");
        md.AppendLine($"- date (UTC): {Date:yyyy-MM-dd HH:mm:ss}");
        foreach (var (name, value) in Machine.Describe()) md.AppendLine($"- {name}: {value}");
        md.AppendLine();
        md.AppendLine("Medians of timed repetitions after warm-up; ratios are measured side by side in this sitting. " +
                      "Every figure and raw timing is in report.json.").AppendLine();
        foreach (var group in tables.GroupBy(t => t.Part))
        {
            md.AppendLine($"## {group.Key}").AppendLine();
            foreach (var (_, table) in group) table.WriteMarkdown(md);
        }
        return md.ToString();
    }

    public string ToJsonText() => Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });

    /// <summary>Writes report.md and report.json into <paramref name="directory"/> (created if missing), and the JSON
    /// also to <paramref name="extraJson"/> when given (the old --json FILE). Returns the paths written.</summary>
    public List<string> Write(string? directory, string? extraJson)
    {
        var written = new List<string>();
        string json = ToJsonText();
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
            string md = Path.Combine(directory, "report.md"), js = Path.Combine(directory, "report.json");
            File.WriteAllText(md, ToMarkdown());
            File.WriteAllText(js, json);
            written.Add(md);
            written.Add(js);
        }
        if (extraJson is not null)
        {
            string? parent = Path.GetDirectoryName(Path.GetFullPath(extraJson));
            if (parent is not null) Directory.CreateDirectory(parent);
            File.WriteAllText(extraJson, json);
            written.Add(extraJson);
        }
        return written;
    }

    public static JsonArray Array(IEnumerable<double> values) => new(values.Select(v => (JsonNode)v).ToArray());
}
