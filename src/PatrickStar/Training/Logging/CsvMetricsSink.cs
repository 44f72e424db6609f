using System.Globalization;

namespace PatrickStar.Training.Logging;

/// <summary>
/// One CSV row per step, flushed as written. The header is fixed by the first step: the trainer's fields and the
/// engine statistics reported then (an engine reports the same keys every step). A value not measured in a step
/// (e.g. val_loss between evaluations) is an empty cell.
/// </summary>
public sealed class CsvMetricsSink : IMetricsSink
{
    private readonly StreamWriter writer;
    private List<string>? columns;

    public CsvMetricsSink(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        writer = new StreamWriter(path, append: false) { AutoFlush = true };
    }

    public void Write(StepMetrics metrics)
    {
        var values = MetricsFields.Of(metrics).ToDictionary(f => f.Name, f => f.Value);
        if (columns is null)
        {
            columns = values.Keys.ToList();
            writer.WriteLine(string.Join(",", columns));
        }
        writer.WriteLine(string.Join(",", columns.Select(c => values.GetValueOrDefault(c) is double v ? v.ToString("R", CultureInfo.InvariantCulture) : "")));
    }

    public void Dispose() => writer.Dispose();
}
