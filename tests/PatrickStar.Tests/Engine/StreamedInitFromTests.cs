using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Models;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using PatrickStar.Training;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>
/// The streamed build (placeholder parameters, each filled in its chunk slot) of `--init-from` and of data-parallel ranks
/// trains bit-identically to the whole-model path: the fp32 model built, imported, then packed into chunks.
/// </summary>
public class StreamedInitFromTests
{
    public StreamedInitFromTests() => TorchRuntime.EnsureLoaded();

    private static readonly object Construction = new(); // the global generator seeds the builds: rank threads take turns

    private sealed record Outcome(List<double> Losses, Dictionary<string, float[]> Masters);

    private static Outcome Run(Trainer trainer, ChunkedEngine engine)
    {
        var losses = new List<double>();
        trainer.StepCompleted += m => losses.Add(m.Loss);
        trainer.Run();
        var masters = new Dictionary<string, float[]>();
        foreach (var name in engine.ParameterNames)
        {
            using var t = engine.ReadState(name, StateKind.Master);
            masters[name] = t.data<float>().ToArray();
        }
        return new Outcome(losses, masters);
    }

    /// <summary>What GptRun does for the chunk engine: the streamed build.</summary>
    private static Outcome Streamed(TrainingConfig config, string? initFrom, ICommunicator? comm = null)
    {
        using var run = GptRun.Create(config, TrainingHarness.CyclicData(), initFrom: initFrom, communicator: comm);
        return Run(run.Trainer, (ChunkedEngine)run.Engine);
    }

    /// <summary>The whole-model path GptRun took before: the fp32 model built from the seed, the weights imported into it, then packed.</summary>
    private static Outcome Whole(TrainingConfig config, string? initFrom, ICommunicator? comm = null)
    {
        var choice = ModelFamilies.Resolve(config.Model);
        TorchSharp.torch.nn.Module<Tensor, Tensor> model;
        lock (Construction)
        {
            manual_seed(config.Seed);
            model = choice.Build(config.ActivationCheckpointing, PlainEngine.ActivationType(config.Precision));
        }
        using var _ = model;
        if (initFrom is not null && model is LlamaForCausalLM llama) HuggingFaceLlamaFolder.Import(llama, initFrom);
        else if (initFrom is not null) HuggingFaceGpt2.Import((GptModel)model, initFrom);
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        using var engine = new ChunkedEngine(model, config, CPU, ChunkEngineOptions.From(config, CPU), sample, comm);
        return Run(new Trainer(config, engine, TrainingHarness.CyclicData(), 1.0, comm), engine);
    }

    private static void AssertIdentical(Outcome expected, Outcome actual, string what)
    {
        Assert.Equal(expected.Losses, actual.Losses);
        Assert.Equal(expected.Masters.Keys.Order(), actual.Masters.Keys.Order());
        foreach (var (name, values) in expected.Masters)
            Assert.True(values.AsSpan().SequenceEqual(actual.Masters[name]), $"{what}: final master of {name} differs");
    }

    private static TrainingConfig PresetConfig(string preset, Precision precision)
    {
        var c = TrainingHarness.Config(steps: 3, precision);
        c.Engine = "chunked";
        // Dropout draws from the global generator: the streamed build must leave it where the whole build does.
        c.Model = new ModelSection { Preset = preset, VocabSize = TrainingHarness.Vocab, Dropout = preset.StartsWith("gpt2") ? 0.1 : null };
        c.Chunks = new ChunkSection { ChunkSize = 20_000, DeviceMemory = 256L << 20, HostMemory = 1L << 30 };
        c.Threads = 1;
        return c;
    }

    /// <summary>Writes the seed-3 model of <paramref name="config"/> as an HF folder in <paramref name="dtype"/>, in small shards.</summary>
    private static void ExportFolder(TrainingConfig config, string folder, ScalarType dtype)
    {
        manual_seed(3);
        using var model = ModelFamilies.Resolve(config.Model).Build(false, null);
        if (model is LlamaForCausalLM llama) HuggingFaceLlamaFolder.Export(llama, folder, dtype, 100_000);
        else HuggingFaceGpt2Folder.Export((GptModel)model, folder, dtype, 100_000);
    }

    /// <summary>
    /// `--init-from` an HF folder (sharded, fp32 or bf16 on disk) trains to the same losses and final masters, bit for bit,
    /// as importing into the whole model; the bf16 files go through the block-wise conversion into fp32 slots.
    /// </summary>
    [Theory]
    [InlineData("gpt2-tiny", Precision.Fp32, ScalarType.Float32)]
    [InlineData("gpt2-tiny", Precision.Bf16, ScalarType.BFloat16)]
    [InlineData("llama-tiny", Precision.Fp32, ScalarType.BFloat16)]
    [InlineData("llama-tiny", Precision.Bf16, ScalarType.Float32)]
    public void InitFromStreamedEqualsTheWholeModelPath(string preset, Precision precision, ScalarType fileType)
    {
        using var dir = new TempDir();
        string folder = Path.Combine(dir.Path, "hf");
        ExportFolder(PresetConfig(preset, precision), folder, fileType);

        var whole = Whole(PresetConfig(preset, precision), folder);
        var streamed = Streamed(PresetConfig(preset, precision), folder);
        AssertIdentical(whole, streamed, $"{preset} {precision} from {fileType}");
        // The weights were really read: a fresh model from the run's seed starts elsewhere.
        var fresh = Streamed(PresetConfig(preset, precision), null);
        Assert.NotEqual(fresh.Losses[0], streamed.Losses[0]);
    }

    /// <summary>
    /// Two ranks as threads, each building only its own shard streamed (with and without `--init-from`), train exactly as
    /// ranks that each built the whole model and packed it.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DataParallelRanksBuildStreamedLikeWholeModels(bool initFrom)
    {
        using var dir = new TempDir();
        string? folder = initFrom ? Path.Combine(dir.Path, "hf") : null;
        TrainingConfig Config()
        {
            var c = TrainingHarness.Config(steps: 3);
            c.Engine = "chunked";
            c.MicroBatchSize = 4;
            c.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = 256L << 20, HostMemory = 1L << 30 };
            c.Threads = 1;
            return c;
        }
        if (folder is not null) ExportFolder(Config(), folder, ScalarType.Float32);

        var whole = InProcessCommunicator.Run(2, comm => Whole(Config(), folder, comm), TimeSpan.FromSeconds(120));
        var streamed = InProcessCommunicator.Run(2, comm => Streamed(Config(), folder, comm), TimeSpan.FromSeconds(120));
        for (int r = 0; r < 2; r++) AssertIdentical(whole[r], streamed[r], $"rank {r}");
    }

    /// <summary>The library's streamed entry gives the engine <see cref="ChunkedEngine.Initialize"/> gives: same masters, same training.</summary>
    [Fact]
    public void InitializeStreamedEqualsInitialize()
    {
        var sizes = new GptConfig(TrainingHarness.Vocab, 32, 2, 32, 4, Dropout: 0.1);
        TrainingConfig Config()
        {
            var c = TrainingHarness.Config(steps: 2);
            c.Engine = "chunked";
            c.Chunks = new ChunkSection { ChunkSize = 8192, DeviceMemory = 256L << 20, HostMemory = 1L << 30 };
            return c;
        }
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        Outcome Train(ChunkedEngine engine, TrainingConfig c)
        {
            using var _ = engine.Model;
            using var e = engine;
            return Run(new Trainer(c, engine, TrainingHarness.CyclicData(), 1.0), engine);
        }
        var c1 = Config();
        var eager = Train(ChunkedEngine.Initialize(() => new GptModel(sizes), c1, sample), c1);
        var c2 = Config();
        var streamedEngine = ChunkedEngine.InitializeStreamed(() => new GptModel(sizes), c2, sample);
        Assert.All(streamedEngine.Model.parameters(), p => Assert.False(p.numel() > 1 && ParameterPlaceholders.IsPlaceholder(p)));
        AssertIdentical(eager, Train(streamedEngine, c2), "InitializeStreamed");
    }

    private sealed class BuiltWithValues : TorchSharp.torch.nn.Module<Tensor, Tensor>, IParameterInitializer
    {
        private readonly TorchSharp.torch.nn.Module<Tensor, Tensor> proj = TorchSharp.torch.nn.Linear(8, 8);
        public BuiltWithValues() : base(nameof(BuiltWithValues)) => RegisterComponents();
        public override Tensor forward(Tensor x) => proj.call(x);
        public void InitializeParameter(string name, TorchSharp.Modules.Parameter parameter, Tensor target) => target.zero_();
    }

    /// <summary>A model whose constructor gives its parameters values (a standard layer) is refused, naming the parameter.</summary>
    [Fact]
    public void InitializeStreamedRefusesAParameterBuiltWithValues()
    {
        var c = TrainingHarness.Config(steps: 1);
        c.Engine = "chunked";
        var e = Assert.Throws<ArgumentException>(() => ChunkedEngine.InitializeStreamed(() => new BuiltWithValues(), c));
        Assert.Contains("'proj.weight'", e.Message);
        Assert.Contains("ParameterPlaceholders", e.Message);
    }
}
