using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Checkpoints;

public sealed class TrainingCheckpointTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "pstar-ckpt-" + Guid.NewGuid().ToString("N"));

    public TrainingCheckpointTests()
    {
        TorchRuntime.EnsureLoaded();
        Directory.CreateDirectory(root);
    }

    public void Dispose()
    {
        try { Directory.Delete(root, recursive: true); } catch (IOException) { }
    }

    private static TrainingConfig Config(string engine, Precision precision = Precision.Fp32, long? chunkSize = 4096)
    {
        var c = TrainingHarness.Config(steps: 6, precision);
        c.Model.Dropout = 0.1; // the resumed run must draw the same dropout masks
        c.Engine = engine;
        c.Chunks = new ChunkSection { ChunkSize = chunkSize, DeviceMemory = 1L << 30, HostMemory = 1L << 30 };
        return c;
    }

    private sealed record Outcome(List<double> Losses, List<Tensor> Parameters);

    /// <summary>Trains to the end, or stops after <paramref name="stopAfter"/> steps and saves a checkpoint.</summary>
    private Outcome Train(TrainingConfig config, int? stopAfter = null, string? resumeFrom = null, string? saveDir = null)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData(), resumeFrom: resumeFrom);
        var losses = new List<double>();
        using var cancel = new CancellationTokenSource();
        run.Trainer.StepCompleted += m =>
        {
            losses.Add(m.Loss);
            if (m.Step == stopAfter) cancel.Cancel();
        };
        run.Trainer.Run(cancel.Token);
        if (stopAfter is not null) run.SaveCheckpoint(saveDir ?? root);
        return new Outcome(losses, run.Model.parameters().Select(p => p.detach().to(ScalarType.Float32).clone()).ToList());
    }

    private static void AssertBitEqual(List<Tensor> a, List<Tensor> b)
    {
        Assert.Equal(a.Count, b.Count);
        for (int i = 0; i < a.Count; i++) Assert.True(a[i].eq(b[i]).all().item<bool>(), $"parameter {i} differs");
    }

    [Theory]
    [InlineData("plain", Precision.Fp32)]
    [InlineData("chunked", Precision.Fp32)]
    [InlineData("chunked", Precision.Bf16)]
    public void AnInterruptedAndResumedRunEqualsAnUninterruptedOneToTheBit(string engine, Precision precision)
    {
        var whole = Train(Config(engine, precision));
        var first = Train(Config(engine, precision), stopAfter: 3);
        var second = Train(Config(engine, precision), resumeFrom: root);

        Assert.Equal(whole.Losses.Take(3), first.Losses);
        Assert.Equal(whole.Losses.Skip(3), second.Losses); // exact doubles
        AssertBitEqual(whole.Parameters, second.Parameters);
    }

    [Fact]
    public void ResumingWithAnotherChunkSizeOrEngineReshardsTheState()
    {
        var whole = Train(Config("chunked"));
        Train(Config("chunked", chunkSize: 4096), stopAfter: 3);
        var rechunked = Train(Config("chunked", chunkSize: 16384), resumeFrom: root);
        var plain = Train(Config("plain"), resumeFrom: root);
        foreach (var resumed in new[] { rechunked, plain })
        {
            for (int i = 0; i < 3; i++)
                Assert.True(Math.Abs(whole.Losses[3 + i] - resumed.Losses[i]) <= 1e-5 * whole.Losses[3 + i], $"step {4 + i}");
            for (int i = 0; i < whole.Parameters.Count; i++)
            {
                using var d = (whole.Parameters[i] - resumed.Parameters[i]).abs().max();
                Assert.True(d.item<float>() <= 1e-5, $"parameter {i} differs by {d.item<float>()}");
            }
        }
    }

    [Fact]
    public void TheLearningRateHorizonStaysThatOfTheOriginalRun()
    {
        Train(Config("plain"), stopAfter: 3);
        var longer = Config("plain");
        longer.Steps = 8;
        using var run = GptRun.Create(longer, TrainingHarness.CyclicData(), resumeFrom: root);
        Assert.Equal(6, run.Config.Scheduler.TotalSteps);
        Assert.Equal(3, run.Trainer.StepsDone);
    }

    [Fact]
    public void AFailedSaveAtAnyStageLeavesThePreviousCheckpointLoadable()
    {
        var config = Config("chunked");
        config.Steps = 4;
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        using var cancel = new CancellationTokenSource();
        run.Trainer.StepCompleted += m => { if (m.Step == 2) cancel.Cancel(); };
        run.Trainer.Run(cancel.Token);
        string good = run.SaveCheckpoint(root);
        run.Trainer.Run(); // steps 3 and 4

        foreach (var stage in TrainingCheckpoint.Stages)
        {
            var options = new TrainingCheckpoint.SaveOptions(KeepLast: 1, BeforeStage: s => { if (s == stage) throw new IOException($"disk full at {s}"); });
            var e = Assert.Throws<IOException>(() => run.SaveCheckpoint(root, options));
            Assert.Contains(stage, e.Message);
            var complete = TrainingCheckpoint.List(root);
            Assert.Equal([good], complete.Select(c => c.Dir));
            Assert.Empty(Directory.EnumerateDirectories(root, ".step-*"));
            var (_, _, state, _) = TrainingCheckpoint.Inspect(root);
            Assert.Equal(2, state.StepsDone);
        }
    }

    [Fact]
    public void KeepsOnlyTheNewestCheckpoints()
    {
        var config = Config("plain");
        config.Checkpoint.KeepLast = 2;
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        using var cancel = new CancellationTokenSource();
        var saved = new List<string>();
        run.Trainer.StepCompleted += m => saved.Add(run.SaveCheckpoint(root));
        run.Trainer.Run();
        Assert.Equal(6, saved.Count);
        Assert.Equal(saved.TakeLast(2), TrainingCheckpoint.List(root).Select(c => c.Dir));
    }

    [Fact]
    public void TruncatedOrCorruptedFilesAreRefusedWithTheFileNamed()
    {
        Train(Config("plain"), stopAfter: 2);
        string dir = TrainingCheckpoint.List(root).Single().Dir;
        string file = Path.Combine(dir, TrainingCheckpoint.RankFile(0, 1));
        byte[] original = File.ReadAllBytes(file);

        File.WriteAllBytes(file, original[..(original.Length / 2)]);
        var truncated = Assert.Throws<CheckpointException>(() => TrainingCheckpoint.Inspect(dir));
        Assert.Contains(file, truncated.Message);
        Assert.Contains("truncated", truncated.Message);

        var flipped = (byte[])original.Clone();
        flipped[^5] ^= 0x40;
        File.WriteAllBytes(file, flipped);
        var corrupted = Assert.Throws<CheckpointException>(() => Train(Config("plain"), resumeFrom: dir));
        Assert.Contains("corrupted", corrupted.Message);

        File.WriteAllBytes(file, original);
        File.WriteAllText(Path.Combine(dir, TrainingCheckpoint.StateName), "{ \"steps_done\": ");
        var state = Assert.Throws<CheckpointException>(() => TrainingCheckpoint.Inspect(dir));
        Assert.Contains(TrainingCheckpoint.StateName, state.Message);
    }

    [Fact]
    public void AModelOfOtherSizesIsRefused()
    {
        Train(Config("plain"), stopAfter: 2);
        var other = Config("plain");
        other.Model.Hidden = 64;
        var e = Assert.Throws<CheckpointException>(() => GptRun.Create(other, TrainingHarness.CyclicData(), resumeFrom: root));
        Assert.Contains("hidden 32", e.Message);
        Assert.Contains("hidden 64", e.Message);
    }

    [Fact]
    public void TheLossScalerStateIsSavedAndRestored()
    {
        var config = Config("chunked", Precision.Fp16);
        config.Fp16 = new Fp16Section { InitialScalePower = 8, LossScaleWindow = 2 };
        Train(config, stopAfter: 3); // three clean steps: 256 -> 512 after two
        using var run = GptRun.Create(Config("chunked", Precision.Fp16) is var c2 ? WithScaler(c2) : null!, TrainingHarness.CyclicData(), resumeFrom: root);
        Assert.Equal(512, run.Engine.Scaler.Scale);
        Assert.Equal(1, run.Engine.Scaler.CleanSteps);
        Assert.Equal(3, run.Engine.OptimizerStepCount);

        static TrainingConfig WithScaler(TrainingConfig c)
        {
            c.Fp16 = new Fp16Section { InitialScalePower = 8, LossScaleWindow = 2 };
            return c;
        }
    }

    [Fact]
    public void ExportOfATrainingCheckpointGivesTheTrainedWeights()
    {
        var trained = Train(Config("chunked"), stopAfter: 6);
        string file = Path.Combine(root, "model.safetensors");
        using (var parameters = CheckpointParameters.Open(root))
            HuggingFaceGpt2.Export(GptRun.ResolveModel(Config("plain")), parameters.Sources(), file, ScalarType.Float32);
        using var model = HuggingFaceGpt2.Load(file);
        var loaded = model.parameters().Select(p => p.detach().clone()).ToList();
        AssertBitEqual(trained.Parameters, loaded);
    }
}

public sealed class InitFromTests
{
    public InitFromTests() => TorchRuntime.EnsureLoaded();

    [Fact]
    public void TrainingStartsFromTheImportedWeightsWithTheSizesOfItsConfigJson()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "model.safetensors");
        var sizes = new GptConfig(VocabSize: GptConfig.Gpt2VocabSize, ContextLength: 32, Layers: 1, Hidden: 32, Heads: 2);
        torch.manual_seed(99);
        using (var source = new GptModel(sizes)) HuggingFaceGpt2.Export(source, file, ScalarType.Float32);

        // Library: the run's parameters are the file's before any step, whatever the seed would have drawn.
        var config = TrainingHarness.Config(steps: 1);
        config.Model = new ModelSection { Preset = null, VocabSize = sizes.VocabSize, ContextLength = 32, Layers = 1, Hidden = 32, Heads = 2 };
        using (var run = GptRun.Create(config, TrainingHarness.CyclicData(), initFrom: file))
        using (var expected = HuggingFaceGpt2.Load(file))
        {
            var ours = run.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, p) in expected.named_parameters())
                Assert.True(ours[name].detach().eq(p.detach()).all().item<bool>(), name);
        }

        // CLI: sizes come from config.json beside the file; a wrong size given on the command line is listed.
        var (code, output, err) = PatrickStar.Tests.Cli.CliTests.Pstar("train", "--init-from", file, "--steps", "1", "--batch", "2", "--seq", "16",
            "--eval-interval", "0", "--plain-output");
        Assert.True(code == 0, err + output);
        (code, _, err) = PatrickStar.Tests.Cli.CliTests.Pstar("train", "--init-from", file, "--hidden", "64", "--heads", "2", "--steps", "1",
            "--batch", "2", "--seq", "16", "--plain-output");
        Assert.NotEqual(0, code);
        Assert.Contains("transformer.wte.weight", err);
    }
}
