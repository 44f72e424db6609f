using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Tiers;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>
/// The chunk engine with a disk tier: host budgets too small for the model data send optimizer state and parameter
/// chunks to disk, and training is the same as without one (plain engine, fp32): alone, accumulating, on two ranks,
/// and across a checkpoint. A failing chunk file stops the run naming chunk, file and OS error.
/// </summary>
public sealed class DiskTierEngineTests : IDisposable
{
    private const long ChunkElements = 4096; // 16 KiB fp32 chunks; the tiny GPT fills about 8
    private const long ChunkBytes = ChunkElements * 4;
    private const int Steps = 4;
    private static readonly ChunkKind[] Kinds = [ChunkKind.Param, ChunkKind.Master, ChunkKind.Momentum, ChunkKind.Variance];
    private readonly string root = Path.Combine(Path.GetTempPath(), "pstar-disktier-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper output;

    public DiskTierEngineTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
        Directory.CreateDirectory(Path.Combine(root, "disk"));
        Directory.CreateDirectory(Path.Combine(root, "ckpt"));
    }

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    private string DiskDir => Path.Combine(root, "disk");

    private static TrainingConfig Config(string engine, int accumulation = 1, int microBatch = 8, int steps = Steps)
    {
        var c = TrainingHarness.Config(steps);
        c.Engine = engine;
        c.MicroBatchSize = microBatch;
        c.GradientAccumulationSteps = accumulation;
        c.Threads = 1;
        c.Chunks = new ChunkSection { ChunkSize = ChunkElements, DeviceMemory = 256L << 20, HostMemory = 1L << 30 };
        return c;
    }

    /// <summary>A host budget of six chunks (plus the fp32 gradient chunks, which stay on the host): far below the model data.</summary>
    private TrainingConfig WithDisk(TrainingConfig c, int gradientChunks = 0)
    {
        c.Chunks.HostMemory = (6 + gradientChunks) * ChunkBytes;
        c.Chunks.DiskDir = DiskDir;
        return c;
    }

    private sealed record Outcome(List<double> Losses, Dictionary<string, float[]> Masters, IoStatistics? Io, long HostPeak, long AllChunkBytes,
        KindBytes OnDiskAtStart, long StreamingBytes = 0);

    private static Outcome Train(TrainingConfig config, ICommunicator? comm = null, int? stopAfter = null, string? saveDir = null, string? resumeFrom = null)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData(), resumeFrom: resumeFrom, communicator: comm);
        var engine = run.Engine as ChunkedEngine;
        var onDiskAtStart = engine?.ChunkBytesIn(Tier.Disk) ?? new KindBytes();
        var losses = new List<double>();
        using var cancel = new CancellationTokenSource();
        run.Trainer.StepCompleted += m =>
        {
            losses.Add(m.Loss);
            if (m.Step == stopAfter) cancel.Cancel();
        };
        run.Trainer.Run(cancel.Token);
        if (saveDir is not null) run.SaveCheckpoint(saveDir);
        var masters = new Dictionary<string, float[]>();
        if (engine is null)
        {
            foreach (var (name, p) in run.Model.named_parameters()) masters[name] = p.detach().to(ScalarType.Float32).data<float>().ToArray();
            return new Outcome(losses, masters, null, 0, 0, onDiskAtStart);
        }
        foreach (var name in engine.ParameterNames)
        {
            using var t = engine.ReadState(name, StateKind.Master);
            masters[name] = t.data<float>().ToArray();
        }
        long all = (long)engine.ChunkCount / engine.Ranks * (config.GradientAccumulationSteps > 1 ? 5 : 4) * ChunkBytes;
        return new Outcome(losses, masters, engine.DiskStatistics, engine.HostTier.PeakInUseBytes, all, onDiskAtStart, engine.DiskStreamingBytes);
    }

    private static void AssertSame(Outcome reference, Outcome disk, int skipSteps = 0)
    {
        for (int s = 0; s < disk.Losses.Count; s++)
        {
            double a = reference.Losses[s + skipSteps], b = disk.Losses[s];
            Assert.True(Math.Abs(a - b) <= 1e-5 * Math.Abs(a), $"step {s + 1 + skipSteps}: loss {b} with disk vs {a}");
        }
        foreach (var (name, values) in disk.Masters)
        {
            var expected = reference.Masters[name];
            for (int i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - expected[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])), $"{name}[{i}]: {values[i]} with disk vs {expected[i]}");
        }
    }

    /// <summary>Disk was really used: every kind was on disk, bytes moved both ways, and the host never held all chunks.</summary>
    private void AssertDiskUsed(Outcome o)
    {
        output.WriteLine($"disk: {o.Io}; host peak {o.HostPeak:N0} B of {o.AllChunkBytes:N0} B of chunks; on disk at start: " +
                         string.Join(", ", Kinds.Select(k => $"{k} {o.OnDiskAtStart[k]:N0}")));
        Assert.NotNull(o.Io);
        Assert.True(o.Io!.BytesRead > 0 && o.Io.BytesWritten > 0, $"disk traffic: {o.Io}");
        foreach (var kind in Kinds) Assert.True(o.OnDiskAtStart[kind] > 0, $"no {kind} chunk was on disk");
        Assert.True(o.HostPeak < o.AllChunkBytes / 2, $"host peak {o.HostPeak:N0} B vs {o.AllChunkBytes:N0} B of chunks");
        Assert.Empty(Directory.EnumerateFileSystemEntries(DiskDir)); // the chunk files went with the engine
    }

    [Fact]
    public void TrainingThroughDiskEqualsPlainTraining()
    {
        var plain = Train(Config("plain"));
        var disk = Train(WithDisk(Config("chunked")));
        AssertSame(plain, disk);
        AssertDiskUsed(disk);
    }

    /// <summary>
    /// Disposing the engine (parameter chunks having cycled through disk) gives every parameter its trained values in
    /// storage of its own; an owner about to dispose the model (the CLI at exit) asks for empty parameters instead, so that a
    /// model larger than memory is not copied out of its chunks.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DisposingGivesTheParametersBackOrEmptiesThem(bool keep)
    {
        using var run = GptRun.Create(Cycling(), TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;
        var masters = new Dictionary<string, float[]>();
        foreach (var name in engine.ParameterNames)
        {
            using var t = engine.ReadState(name, StateKind.Master);
            masters[name] = t.data<float>().ToArray();
        }
        engine.KeepParametersOnDispose = keep;
        engine.Dispose();
        int compared = 0;
        foreach (var (name, p) in run.Model.named_parameters())
        {
            if (!keep)
            {
                Assert.Equal(0, p.numel());
                continue;
            }
            Assert.Equal(masters[name], p.detach().data<float>().ToArray());
            compared++;
        }
        Assert.True(!keep || compared == masters.Count, $"{compared} of {masters.Count} parameters compared");
    }

    /// <summary>
    /// A GPT whose parameter chunks (about 6.4 MB in 1 MB chunks) outweigh its non-model data, under a device budget that
    /// holds only some of them: parameter chunks leave the device for the host and, the host being full, for disk.
    /// </summary>
    private static TrainingConfig Bigger(string engine, long deviceMemory = 1L << 30)
    {
        var c = Config(engine, microBatch: 2, steps: 3);
        c.Optimizer.LearningRate = 1e-3;
        c.Model.Hidden = 256;
        c.Model.Heads = 4;
        c.Model.Layers = 2;
        c.SequenceLength = 16;
        c.Chunks.ChunkSize = 256 * 1024; // mlp.c_fc.weight
        c.Chunks.DeviceMemory = deviceMemory;
        c.Chunks.WarmupDeviceRatio = 0.05;
        return c;
    }

    /// <summary>Bigger under a device budget that holds only some parameter chunks and a host budget of six: parameter chunks
    /// cycle device, host and disk (the budget from a probe run's non-model peak, at least the estimator's need).</summary>
    private TrainingConfig Cycling()
    {
        long chunkBytes = 256 * 1024 * 4;
        long peakNonModel, estimated;
        var probeConfig = Bigger("chunked");
        probeConfig.Steps = 1;
        using (var probe = GptRun.Create(probeConfig, TrainingHarness.CyclicData()))
        {
            probe.Trainer.Run();
            var e = (ChunkedEngine)probe.Engine;
            peakNonModel = Math.Max(e.Trace.PeakNonModel, e.PeakNonModelObserved);
            // Below the estimator's device need GptRun.Create refuses the run before it starts.
            estimated = PatrickStar.Models.Estimation.MemoryEstimator.Estimate(
                PatrickStar.Models.Estimation.MemoryEstimator.RequestFor(Bigger("chunked"), probe.ModelConfig, 1L << 30, 1L << 30), suggestKnobs: false)
                .Tiers.Single(t => t.Tier == "device").Needed;
        }
        long budget = Math.Max(2 * peakNonModel + 3 * chunkBytes, estimated);
        output.WriteLine($"device budget {budget:N0} B (peak non-model {peakNonModel:N0} B)");
        var config = WithDisk(Bigger("chunked", budget));
        config.Chunks.HostMemory = 6 * chunkBytes;
        return config;
    }

    [Fact]
    public void ParameterChunksCycleThroughDiskUnderATightDeviceBudget()
    {
        var plain = Train(Bigger("plain"));
        var disk = Train(Cycling());
        output.WriteLine($"disk: {disk.Io}");
        AssertSame(plain, disk);
        Assert.True(disk.Io!.CleanEvictionsSkipped > 0, $"no parameter chunk left the host clean: {disk.Io}");
    }

    /// <summary>
    /// Chunk files whose every read and write pauses halfway: a chunk used before its read completed, or read back from a
    /// half-written file instead of the pending write, would change the losses. Training through disk still equals plain
    /// training, with read-ahead and write-behind (disk_read_ahead) on and off; off, compute waits for all the disk traffic.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SlowReadsAndWritesNeverReachComputeEarly(bool readAhead)
    {
        var plain = Train(Bigger("plain"));
        var config = Cycling();
        config.Chunks.DiskReadAhead = readAhead;
        config.Chunks.DiskFileOpener = (path, direct) => new Tiers.InjectedChunkFile(PosixChunkFile.Open(path, direct)) { ReadDelayMs = 4, WriteDelayMs = 4 };
        var disk = Train(config);
        output.WriteLine($"disk_read_ahead {readAhead}: {disk.Io}, reads served from pending writes {disk.Io!.ReadsServedFromPendingWrites}");
        AssertSame(plain, disk);
        Assert.True(disk.Io.Reads > 0 && disk.Io.Writes > 0, $"disk traffic: {disk.Io}");
        if (!readAhead)
            Assert.True(disk.Io.ConsumerWaitSeconds >= 0.9 * disk.Io.IoSeconds, $"compute waited {disk.Io.ConsumerWaitSeconds:0.000} s of {disk.Io.IoSeconds:0.000} s of I/O");
    }

    /// <summary>
    /// The gradient norm of a parameter chunk on disk is taken as the chunk was written in backward: the optimizer step reads
    /// each on-disk parameter chunk once (to update it), not once more for the norm; and the norms equal plain training's.
    /// </summary>
    [Fact]
    public void TheGradientNormReadsNoParameterChunkFromDisk()
    {
        var config = Cycling();
        config.Chunks.DiskReadAhead = false; // reads during a step are then the step's own
        Tiers.InjectedChunkFile? paramFile = null;
        config.Chunks.DiskFileOpener = (path, direct) =>
        {
            var file = new Tiers.InjectedChunkFile(PosixChunkFile.Open(path, direct));
            if (path.EndsWith("param.chunks", StringComparison.Ordinal)) paramFile = file;
            return file;
        };
        var plain = StepNorms(Bigger("plain"), step => step.Run());
        long chunkBytes = config.Chunks.ChunkSize!.Value * 4;
        int stepsWithParametersOnDisk = 0;
        var norms = StepNorms(config, step =>
        {
            var engine = (ChunkedEngine)step.Engine;
            long onDisk = engine.ChunkBytesIn(Tier.Disk)[ChunkKind.Param] / chunkBytes;
            int before = paramFile!.ReadCount;
            step.Run();
            output.WriteLine($"step with {onDisk} parameter chunks on disk: {paramFile.ReadCount - before} reads of them");
            Assert.Equal(onDisk, paramFile.ReadCount - before);
            if (onDisk > 0) stepsWithParametersOnDisk++;
        });
        Assert.True(stepsWithParametersOnDisk > 0, "no parameter chunk was on disk at a step");
        for (int i = 0; i < plain.Count; i++)
            Assert.True(Math.Abs(norms[i] - plain[i]) <= 1e-5 * plain[i], $"step {i + 1}: gradient norm {norms[i]} through disk vs {plain[i]}");
    }

    /// <summary>An optimizer step about to run: <see cref="Run"/> runs it.</summary>
    private sealed record PendingStep(ITrainingEngine Engine, Action Run);

    /// <summary>Trains by hand (forward, backward, step); <paramref name="around"/> runs each step. Returns the gradient norms.</summary>
    private static List<double> StepNorms(TrainingConfig config, Action<PendingStep> around)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        var data = TrainingHarness.CyclicData();
        var rng = new PatrickStar.Data.SplitMix64(1);
        var norms = new List<double>();
        for (int step = 0; step < config.Steps; step++)
        {
            using var scope = NewDisposeScope();
            var (x, y) = data.Batch(PatrickStar.Data.Split.Train, config.MicroBatchSize, config.SequenceLength, rng, run.Engine.Device);
            run.Engine.Backward(LanguageModelLoss.Of(run.Engine.Model, x, y));
            around(new PendingStep(run.Engine, () => norms.Add(run.Engine.Step(1e-3).GradNorm)));
        }
        return norms;
    }

    [Fact]
    public void StreamingTheOptimizerInSlicesOfAChunkEqualsWholeChunksBitForBit()
    {
        var whole = Train(WithDisk(Config("chunked")));
        var config = WithDisk(Config("chunked"));
        config.Chunks.DiskSliceBytes = 4096; // a quarter of a 16 KiB chunk
        var sliced = Train(config);
        output.WriteLine($"whole chunks: {whole.Io}; slices: {sliced.Io}");
        Assert.Equal(whole.Losses, sliced.Losses);
        foreach (var (name, values) in whole.Masters) Assert.Equal(Bits(values), Bits(sliced.Masters[name]));
        Assert.Equal(StreamedGroups.OptimizerBuffers * 4096L, sliced.StreamingBytes);
        Assert.Equal(StreamedGroups.OptimizerBuffers * ChunkBytes, whole.StreamingBytes); // a chunk below the default slice: one buffer each
        Assert.True(sliced.Io!.Writes > whole.Io!.Writes, $"not streamed in slices: {sliced.Io} vs {whole.Io}");
    }

    [Theory]
    [InlineData(256 * 1024)] // 1 MiB fp32 chunks
    [InlineData(1024 * 1024)] // 4 MiB
    public void TheOptimizerSlicePoolStaysAtItsBoundWhateverTheChunkSize(long chunkElements)
    {
        var config = WithDisk(Bigger("chunked"));
        config.Steps = 1;
        config.Chunks.ChunkSize = chunkElements;
        config.Chunks.HostMemory = 6 * chunkElements * 4;
        config.Chunks.DiskSliceBytes = 64 << 10;
        var run = Train(config);
        Assert.Equal(StreamedGroups.OptimizerBuffers * (64L << 10), run.StreamingBytes);
        Assert.True(run.OnDiskAtStart[ChunkKind.Master] > 0, "the optimizer state was not on disk");
    }

    private static int[] Bits(float[] values) => System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(values).ToArray();

    [Fact]
    public void GradientAccumulationThroughDiskEqualsPlainTraining()
    {
        var plain = Train(Config("plain", accumulation: 2, microBatch: 4));
        var disk = Train(WithDisk(Config("chunked", accumulation: 2, microBatch: 4), gradientChunks: 12));
        AssertSame(plain, disk);
        AssertDiskUsed(disk);
    }

    [Fact]
    public void TwoRanksWithTheirOwnDiskFilesTrainLikeOneRank()
    {
        var single = Train(Config("chunked"));
        var ranks = InProcessCommunicator.Run(2, comm => Train(WithDisk(Config("chunked", microBatch: 4)), comm), TimeSpan.FromSeconds(120));
        foreach (var rank in ranks)
        {
            AssertSame(single, rank with { Masters = new() });
            Assert.True(rank.Io!.BytesRead > 0 && rank.Io.BytesWritten > 0, $"disk traffic: {rank.Io}");
        }
        var union = ranks.SelectMany(r => r.Masters).ToDictionary(kv => kv.Key, kv => kv.Value);
        AssertSame(single with { Losses = [] }, ranks[0] with { Losses = [], Masters = union });
        Assert.Equal(single.Masters.Keys.Order(), union.Keys.Order());
        Assert.Empty(Directory.EnumerateFileSystemEntries(DiskDir));
    }

    [Fact]
    public void ResumingFromACheckpointThroughDiskEqualsAnUninterruptedRun()
    {
        string ckpt = Path.Combine(root, "ckpt");
        var whole = Train(WithDisk(Config("chunked", steps: 6)));
        var first = Train(WithDisk(Config("chunked", steps: 6)), stopAfter: 3, saveDir: ckpt);
        var second = Train(WithDisk(Config("chunked", steps: 6)), resumeFrom: ckpt);
        Assert.Equal(whole.Losses.Take(3), first.Losses);
        AssertSame(whole, second, skipSteps: 3);
        AssertDiskUsed(second);
    }

    [Fact]
    public void AnIoErrorMidRunNamesChunkFileAndErrorAndThePreviousCheckpointLoads()
    {
        string ckpt = Path.Combine(root, "ckpt");
        var whole = Train(WithDisk(Config("chunked", steps: 5)));
        Train(WithDisk(Config("chunked", steps: 5)), stopAfter: 2, saveDir: ckpt);

        var failing = WithDisk(Config("chunked", steps: 5));
        int writes = 0;
        failing.Chunks.DiskFileOpener = (path, direct) => new FailingFile(PosixChunkFile.Open(path, direct), () => ++writes > 40);
        var error = Assert.ThrowsAny<Exception>(() => Train(failing, resumeFrom: ckpt));
        var (line, user) = PatrickStar.Cli.Commands.CommandErrors.Describe(error);
        output.WriteLine(line);
        Assert.True(user, line);
        Assert.IsType<DiskIoException>(error);
        Assert.Matches(@"^error: disk tier: write of chunk (param|master|momentum|variance)#\d+ in .*pstar-\d+-\w+\.chunks failed: .*\(errno 5\)", line);
        Assert.DoesNotContain('\n', line);
        Assert.Empty(Directory.EnumerateFileSystemEntries(DiskDir)); // no files left by the failed run

        var resumed = Train(WithDisk(Config("chunked", steps: 5)), resumeFrom: ckpt);
        AssertSame(whole, resumed, skipSteps: 2);
    }

    /// <summary>A chunk file whose writes fail with EIO once <paramref name="fail"/> says so.</summary>
    private sealed class FailingFile(IChunkFile inner, Func<bool> fail) : IChunkFile
    {
        public string Path => inner.Path;
        public bool Direct => inner.Direct;
        public int Preallocate(long length) => inner.Preallocate(length);
        public int Read(long offset, nint buffer, long length) => inner.Read(offset, buffer, length);
        public int Write(long offset, nint buffer, long length) => fail() ? 5 : inner.Write(offset, buffer, length);
        public void Dispose() => inner.Dispose();
    }
}
