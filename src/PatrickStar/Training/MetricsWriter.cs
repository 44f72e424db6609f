using System.Text.Json;

namespace PatrickStar.Training;

/// <summary>
/// Writes one JSON object per step (JSON Lines) for plotting and tracking tools: step, loss,
/// validation loss when measured, learning rate, gradient norm, throughput, memory, and every
/// statistic the engine reports. Each line is flushed as it is written.
/// </summary>
public sealed class MetricsWriter : Logging.IMetricsSink
{
    private readonly StreamWriter writer;

    public MetricsWriter(string path)
    {
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        writer = new StreamWriter(path, append: false) { AutoFlush = true };
    }

    public static string ToJson(StepMetrics m)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var (name, value) in Logging.MetricsFields.Of(m))
            {
                if (name == "skipped") json.WriteBoolean(name, m.Skipped);
                else if (value is double v) json.WriteNumber(name, v);
            }
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    public void Write(StepMetrics m) => writer.WriteLine(ToJson(m));

    public void Dispose() => writer.Dispose();
}
