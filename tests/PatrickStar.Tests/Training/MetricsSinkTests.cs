using System.Globalization;
using PatrickStar.Profiling;
using PatrickStar.Training;
using PatrickStar.Training.Logging;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Training;

/// <summary>The metrics sinks: CSV rows and TensorBoard event files, read back.</summary>
public class MetricsSinkTests
{
    private static StepMetrics Step(int step, double loss, double? val) => new(step, 3, loss, val, 1e-3 * step, 0.5 + step, false, 0.25,
        4096.0 * step, 0.001, TimeSpan.FromSeconds(step), TimeSpan.Zero, new MemorySnapshot(1000 * step, 2000, 3000),
        new EngineStatistics(Chunks: new ChunkStatistics(4, 1024, 0.9, new ChunkIterationStatistics(BytesToDevice: 1 << 20, BytesToHost: 0, ChunkMoves: 0,
            Evictions: step, PeakDeviceBytes: 5_000_000 + step, PeakDeviceModelBytes: 0, PeakDeviceNonModelBytes: 0, DeviceNeedBytes: 0,
            DeviceChunksResident: 0, OptimizerChunksOnDevice: 0))));

    [Fact]
    public void CrcMatchesTheCastagnoliCheckValue() =>
        Assert.Equal(0xc78ab0e5u, TensorBoardEvents.MaskedCrc("123456789"u8)); // CRC-32C("123456789") = 0xe3069283, masked

    [Fact]
    public void TensorBoardEventsHoldEveryScalarAtItsStep()
    {
        using var dir = new TempDir();
        long before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using (var sink = new TensorBoardMetricsSink(dir.Path))
            foreach (var m in new[] { Step(1, 10.5, 10.75), Step(2, 9.25, null), Step(3, 8.5, 8.75) })
                sink.Write(m);
        var scalars = TensorBoardEvents.ReadScalars(dir.Path);

        float[] Series(string tag) => scalars.Where(s => s.Tag == tag).OrderBy(s => s.Step).Select(s => s.Value).ToArray();
        Assert.Equal(new[] { 10.5f, 9.25f, 8.5f }, Series("loss/train"));
        Assert.Equal(new[] { 10.75f, 8.75f }, Series("loss/validation"));
        Assert.Equal(new long[] { 1, 3 }, scalars.Where(s => s.Tag == "loss/validation").Select(s => s.Step).Order());
        Assert.Equal(new[] { 1e-3f, 2e-3f, 3e-3f }, Series("train/lr"));
        Assert.Equal(new[] { 1.5f, 2.5f, 3.5f }, Series("train/grad_norm"));
        Assert.Equal(new[] { 4096f, 8192f, 12288f }, Series("throughput/tokens_per_second"));
        Assert.Equal(new[] { 1000f, 2000f, 3000f }, Series("memory/host_allocated_bytes"));
        Assert.Equal(new[] { 5e6f + 1, 5e6f + 2, 5e6f + 3 }, Series("memory/device_peak_bytes"));
        Assert.Equal(new[] { 1f, 2f, 3f }, Series("chunks/evictions"));
        Assert.Equal(new[] { 1048576f, 1048576f, 1048576f }, Series("chunks/bytes_to_device"));
        // TensorBoard orders points by wall time in seconds since the Unix epoch.
        Assert.All(scalars, s => Assert.InRange(s.WallTime, before, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1));
    }

    [Fact]
    public void CsvHasAHeaderAndOneRowPerStepWithEmptyCellsForUnmeasuredValues()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "m.csv");
        using (var sink = new CsvMetricsSink(path))
            foreach (var m in new[] { Step(1, 10.5, 10.75), Step(2, 9.25, null) })
                sink.Write(m);
        var lines = File.ReadAllLines(path);
        Assert.Equal(3, lines.Length);
        var header = lines[0].Split(',');
        var engineFields = Step(1, 0, null).EngineStatistics.Named().Select(kv => kv.Key).Order(StringComparer.Ordinal);
        Assert.Equal(MetricsFields.TrainerFields.Concat(engineFields), header);
        Assert.Contains("evictions", header);
        var rows = lines.Skip(1).Select(l => l.Split(',')).ToArray();
        string Cell(int row, string column) => rows[row][Array.IndexOf(header, column)];
        Assert.Equal("10.75", Cell(0, "val_loss"));
        Assert.Equal("", Cell(1, "val_loss"));
        Assert.Equal("9.25", Cell(1, "loss"));
        Assert.Equal(2e-3, double.Parse(Cell(1, "lr"), CultureInfo.InvariantCulture));
        Assert.Equal("2", Cell(1, "evictions"));
    }

    [Fact]
    public void TrainWritesCsvAndTensorBoardWhenAsked()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));
        string csv = Path.Combine(dir.Path, "m.csv"), board = Path.Combine(dir.Path, "tb");
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--data", data, "--steps", "3", "--batch", "2", "--seq", "32",
            "--eval-interval", "2", "--metrics", csv, "--tensorboard", board, "--plain-output");
        Assert.True(code == 0, err + output);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(4, lines.Length); // header and 3 steps
        Assert.StartsWith("step,loss,val_loss,lr,", lines[0]);

        var scalars = TensorBoardEvents.ReadScalars(board);
        var header = lines[0].Split(',');
        for (int step = 1; step <= 3; step++)
        {
            var row = lines[step].Split(',');
            float loss = scalars.Single(s => s.Tag == "loss/train" && s.Step == step).Value;
            Assert.Equal((float)double.Parse(row[Array.IndexOf(header, "loss")], CultureInfo.InvariantCulture), loss);
            Assert.Contains(scalars, s => s.Tag == "throughput/tokens_per_second" && s.Step == step && s.Value > 0);
            Assert.Contains(scalars, s => s.Tag == "memory/resident_bytes" && s.Step == step && s.Value > 0);
        }
        Assert.Equal(new long[] { 1, 2, 3 }, scalars.Where(s => s.Tag == "loss/validation").Select(s => s.Step).Order());
    }

    [Fact]
    public void TheChunkEngineLogsEveryTiersMemoryToTensorBoard()
    {
        using var dir = new TempDir();
        string board = Path.Combine(dir.Path, "tb");
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--engine", "chunked", "--steps", "2", "--batch", "2", "--seq", "32",
            "--eval-interval", "0", "--tensorboard", board, "--plain-output");
        Assert.True(code == 0, err + output);
        var scalars = TensorBoardEvents.ReadScalars(board);
        for (int step = 1; step <= 2; step++)
        {
            float Value(string tag) => scalars.Single(s => s.Tag == tag && s.Step == step).Value;
            // The host tier holds at least one fp32 copy of gpt2-tiny's 13.3M parameters (the master weights; hybrid
            // Adam keeps momentum and variance on the device when its margin allows).
            Assert.True(Value("memory/host_peak_chunk_bytes") >= 4 * 13_000_000f, $"host peak {Value("memory/host_peak_chunk_bytes")}");
            Assert.InRange(Value("memory/host_chunk_bytes"), 0, Value("memory/host_peak_chunk_bytes"));
            Assert.True(Value("memory/device_peak_chunk_bytes") > 0);
            Assert.True(Value("memory/device_peak_non_model_bytes") > 0);
        }
    }

    [Fact]
    public void AnUnwritableTensorBoardFolderIsRefusedBeforeAnyWork()
    {
        using var dir = new TempDir();
        string file = dir.File("not-a-folder", "x");
        var (code, _, err) = Pstar("train", "--model", "gpt2-tiny", "--steps", "1", "--tensorboard", file, "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("--tensorboard folder", err);
        Assert.Equal("x", File.ReadAllText(file));
    }
}
