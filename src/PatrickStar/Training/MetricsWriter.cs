using System.Text.Json;

namespace PatrickStar.Training;

/// <summary>
/// Writes one JSON object per step (JSON Lines) for plotting and tracking tools: step, loss,
/// validation loss when measured, learning rate, gradient norm, throughput, memory, and every
/// statistic the engine reports. Each line is flushed as it is written.
/// </summary>
public sealed class MetricsWriter : IDisposable
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
            json.WriteNumber("step", m.Step);
            json.WriteNumber("loss", m.Loss);
            if (m.ValidationLoss is double v) json.WriteNumber("val_loss", v);
            json.WriteNumber("lr", m.LearningRate);
            if (double.IsFinite(m.GradNorm)) json.WriteNumber("grad_norm", m.GradNorm);
            json.WriteBoolean("skipped", m.Skipped);
            json.WriteNumber("step_seconds", m.StepSeconds);
            json.WriteNumber("tokens_per_second", m.TokensPerSecond);
            json.WriteNumber("tflops", m.Tflops);
            json.WriteNumber("elapsed_seconds", m.Elapsed.TotalSeconds);
            json.WriteNumber("native_in_use_bytes", m.Memory.NativeInUse);
            json.WriteNumber("rss_bytes", m.Memory.Resident);
            json.WriteNumber("peak_rss_bytes", m.Memory.PeakResident);
            if (PatrickStar.Profiling.MemoryMeter.RuntimeBaselineResident is long baseline) json.WriteNumber("runtime_baseline_rss_bytes", baseline);
            foreach (var (key, value) in m.EngineStatistics.Named().OrderBy(kv => kv.Key, StringComparer.Ordinal))
                if (double.IsFinite(value) && key != "grad_norm") json.WriteNumber(key, value);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    public void Write(StepMetrics m) => writer.WriteLine(ToJson(m));

    public void Dispose() => writer.Dispose();
}
