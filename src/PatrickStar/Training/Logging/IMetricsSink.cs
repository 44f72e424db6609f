namespace PatrickStar.Training.Logging;

/// <summary>Somewhere a run's per-step metrics go: a JSON Lines file, a CSV file, TensorBoard event files.</summary>
public interface IMetricsSink : IDisposable
{
    void Write(StepMetrics metrics);
}

/// <summary>
/// One step's metrics as named numbers, in the order every sink writes them: the trainer's own figures, then every
/// statistic the engine reports (memory per tier, chunk traffic, ...), sorted by name. A value that was not measured
/// this step (validation loss between evaluations, the gradient norm of a skipped step) is null.
/// </summary>
public static class MetricsFields
{
    /// <summary>The trainer's own fields; "skipped" is 1 for a skipped step, 0 otherwise.</summary>
    public static readonly IReadOnlyList<string> TrainerFields = new[]
    {
        "step", "loss", "val_loss", "lr", "grad_norm", "skipped", "step_seconds", "tokens_per_second", "tflops", "elapsed_seconds",
        "native_in_use_bytes", "rss_bytes", "peak_rss_bytes", "runtime_baseline_rss_bytes",
    };

    public static IEnumerable<(string Name, double? Value)> Of(StepMetrics m)
    {
        yield return ("step", m.Step);
        yield return ("loss", m.Loss);
        yield return ("val_loss", m.ValidationLoss);
        yield return ("lr", m.LearningRate);
        yield return ("grad_norm", double.IsFinite(m.GradNorm) ? m.GradNorm : null);
        yield return ("skipped", m.Skipped ? 1 : 0);
        yield return ("step_seconds", m.StepSeconds);
        yield return ("tokens_per_second", m.TokensPerSecond);
        yield return ("tflops", m.Tflops);
        yield return ("elapsed_seconds", m.Elapsed.TotalSeconds);
        yield return ("native_in_use_bytes", m.Memory.NativeInUse);
        yield return ("rss_bytes", m.Memory.Resident);
        yield return ("peak_rss_bytes", m.Memory.PeakResident);
        yield return ("runtime_baseline_rss_bytes", PatrickStar.Profiling.MemoryMeter.RuntimeBaselineResident);
        // The engine's grad_norm is the trainer's own, already written above.
        foreach (var (key, value) in m.EngineStatistics.Named().OrderBy(kv => kv.Key, StringComparer.Ordinal))
            if (key != "grad_norm") yield return (key, double.IsFinite(value) ? value : null);
    }
}
