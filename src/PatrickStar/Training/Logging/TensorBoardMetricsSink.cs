using TorchSharp;

namespace PatrickStar.Training.Logging;

/// <summary>
/// TensorBoard event files through TorchSharp's own SummaryWriter (`tensorboard --logdir DIR` shows them). Every
/// metric becomes a scalar at the step: losses under loss/, the optimizer under train/, speed under throughput/,
/// memory per tier under memory/, chunk traffic under chunks/, other engine statistics under engine/.
/// </summary>
public sealed class TensorBoardMetricsSink : IMetricsSink
{
    private static readonly Dictionary<string, string> Tags = new()
    {
        ["loss"] = "loss/train",
        ["val_loss"] = "loss/validation",
        ["lr"] = "train/lr",
        ["grad_norm"] = "train/grad_norm",
        ["skipped"] = "train/skipped",
        ["loss_scale"] = "train/loss_scale",
        ["tokens_per_second"] = "throughput/tokens_per_second",
        ["tflops"] = "throughput/tflops",
        ["step_seconds"] = "throughput/step_seconds",
        ["native_in_use_bytes"] = "memory/host_allocated_bytes",
        ["rss_bytes"] = "memory/resident_bytes",
        ["peak_rss_bytes"] = "memory/peak_resident_bytes",
        ["peak_device_bytes"] = "memory/device_peak_bytes",
        ["peak_device_model_bytes"] = "memory/device_peak_chunk_bytes",
        ["peak_device_non_model_bytes"] = "memory/device_peak_non_model_bytes",
        ["device_need_bytes"] = "memory/device_need_bytes",
        ["host_bytes"] = "memory/host_chunk_bytes",
        ["peak_host_bytes"] = "memory/host_peak_chunk_bytes",
        ["held_chunk_bytes"] = "memory/held_chunk_bytes",
        ["bytes_to_device"] = "chunks/bytes_to_device",
        ["bytes_to_host"] = "chunks/bytes_to_host",
        ["chunk_moves"] = "chunks/moves",
        ["evictions"] = "chunks/evictions",
        ["device_chunks_resident"] = "chunks/on_device",
        ["optimizer_chunks_on_device"] = "chunks/optimizer_on_device",
    };

    // Not worth a curve: the step is the x axis; the others are constant for a run.
    private static readonly HashSet<string> Skip = new() { "step", "elapsed_seconds", "runtime_baseline_rss_bytes", "chunks", "chunk_elements", "chunk_utilisation" };

    private readonly TorchSharp.Modules.SummaryWriter writer;

    public TensorBoardMetricsSink(string logDir)
    {
        writer = torch.utils.tensorboard.SummaryWriter(Path.GetFullPath(logDir));
    }

    /// <summary>The TensorBoard tag a metric is written under.</summary>
    public static string TagOf(string name) => Tags.TryGetValue(name, out var tag) ? tag : "engine/" + name;

    public void Write(StepMetrics metrics)
    {
        foreach (var (name, value) in MetricsFields.Of(metrics))
            if (value is double v && !Skip.Contains(name))
                writer.add_scalar(TagOf(name), (float)v, metrics.Step);
    }

    public void Dispose() { } // every scalar is written and closed as it is added
}
