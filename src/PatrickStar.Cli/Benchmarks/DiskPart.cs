using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Profiling;
using PatrickStar.Tiers;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Part `disk`: the disk tier's sequential bandwidth with O_DIRECT and buffered I/O, and one Adam step streamed from disk
/// (compute vs I/O vs total). Files go to the temp directory (set TMPDIR to measure another disk) and are removed after.
/// </summary>
public sealed class DiskPart : IBenchPart
{
    public string Name => "disk";

    public void Run(BenchContext context)
    {
        bool quick = context.Settings.Quick;
        string directory = Path.GetTempPath();
        long fileBytes = quick ? 256L << 20 : 2L << 30, chunkBytes = 8L << 20;
        long adamElements = quick ? 32L << 20 : 256L << 20, adamChunk = quick ? 4L << 20 : 16L << 20;
        const int adamBuffers = 12; // three groups of four chunks: read ahead, update, write behind

        BenchContext.Progress($"disk tier in {directory}: {Bytes.Format(fileBytes)} written and read in {Bytes.Format(chunkBytes)} chunks, O_DIRECT then buffered...");
        var bandwidth = new ReportTable($"disk tier sequential bandwidth, {Bytes.Format(fileBytes)} in {Bytes.Format(chunkBytes)} chunks ({directory})")
            .Column("I/O mode", right: false).Column("write MiB/s").Column("read MiB/s").Column("write s").Column("flush s").Column("read s");
        var rows = new JsonArray();
        foreach (var mode in new[] { DiskIoMode.Auto, DiskIoMode.Buffered })
        {
            var b = DiskTierBenchmark.Sequential(directory, mode, fileBytes, chunkBytes);
            if (mode == DiskIoMode.Auto && !b.Direct) continue; // O_DIRECT refused here: the buffered row follows
            bandwidth.Row(b.Direct ? "O_DIRECT" : "buffered", $"{b.WriteBytesPerSecond / (1 << 20):0}", $"{b.ReadBytesPerSecond / (1 << 20):0}",
                          $"{b.WriteSeconds:0.00}", $"{b.FlushSeconds:0.00}", $"{b.ReadSeconds:0.00}");
            rows.Add(new JsonObject { ["direct"] = b.Direct, ["bytes"] = b.FileBytes, ["write_seconds"] = b.WriteSeconds,
                                      ["flush_seconds"] = b.FlushSeconds, ["read_seconds"] = b.ReadSeconds });
        }
        bandwidth.Notes.Add("one I/O thread, four buffers in flight; buffered writes count their fdatasync, and the file's pages are dropped before the read.");
        context.Report.Add(Name, bandwidth);

        BenchContext.Progress($"one Adam step over {adamElements:N0} elements streamed from disk ({adamBuffers} buffers of {Bytes.Format(adamChunk * 4)})...");
        var adam = DiskTierBenchmark.StreamedAdam(directory, DiskIoMode.Auto, adamElements, adamChunk, adamBuffers);
        var t = adam.Times;
        var overlap = new ReportTable($"Adam step streamed from disk ({(adam.Direct ? "O_DIRECT" : "buffered")}), {adamElements:N0} elements in {adam.Groups} groups")
            .Column("compute s").Column("I/O s").Column("consumer wait s").Column("total s").Column("overlapped s").Column("overlap");
        overlap.Row($"{t.ComputeSeconds:0.00}", $"{adam.IoSeconds:0.00}", $"{t.WaitSeconds:0.00}", $"{t.TotalSeconds:0.00}", $"{adam.OverlappedSeconds:0.00}", $"{adam.Overlap * 100:0}%");
        overlap.Notes.Add($"read {Bytes.Format(adam.BytesRead)} (master, momentum, variance, gradient), wrote {Bytes.Format(adam.BytesWritten)} (the gradient is clean: never written); " +
                          $"host memory {adam.Buffers} x {Bytes.Format(adam.BufferBytes)}. overlapped = compute + I/O - total; overlap = overlapped / the shorter of compute and I/O (100%: total = the longer).");
        context.Report.Add(Name, overlap);

        context.Report.Json[Name] = new JsonObject
        {
            ["directory"] = directory,
            ["sequential"] = rows,
            ["adam"] = new JsonObject
            {
                ["direct"] = adam.Direct, ["elements"] = adam.Elements, ["groups"] = adam.Groups, ["buffers"] = adam.Buffers,
                ["compute_seconds"] = t.ComputeSeconds, ["io_seconds"] = adam.IoSeconds, ["wait_seconds"] = t.WaitSeconds,
                ["total_seconds"] = t.TotalSeconds, ["bytes_read"] = adam.BytesRead, ["bytes_written"] = adam.BytesWritten,
            },
        };
    }
}
