using PatrickStar.Runtime;

namespace PatrickStar.Training.Logging;

/// <summary>Opens the sinks a run asked for, and checks their paths before any work starts.</summary>
public static class MetricsSinks
{
    /// <summary>`--metrics FILE` writes CSV when the file name ends in .csv, JSON Lines otherwise.</summary>
    public static bool IsCsv(string path) => Path.GetExtension(path).Equals(".csv", StringComparison.OrdinalIgnoreCase);

    /// <summary>Throws <see cref="OutputPathException"/> naming the flag when an output cannot be written.</summary>
    public static void EnsureWritable(string? metricsPath, string? tensorBoardDir)
    {
        if (metricsPath is not null) OutputPaths.EnsureWritableFile(metricsPath, "--metrics file");
        if (tensorBoardDir is not null) OutputPaths.EnsureWritableDirectory(tensorBoardDir, "--tensorboard folder");
    }

    public static List<IMetricsSink> Open(string? metricsPath, string? tensorBoardDir)
    {
        var sinks = new List<IMetricsSink>();
        try
        {
            if (metricsPath is not null) sinks.Add(IsCsv(metricsPath) ? new CsvMetricsSink(metricsPath) : new MetricsWriter(metricsPath));
            if (tensorBoardDir is not null) sinks.Add(new TensorBoardMetricsSink(tensorBoardDir));
            return sinks;
        }
        catch
        {
            foreach (var s in sinks) s.Dispose();
            throw;
        }
    }
}
