using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Models.Estimation;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using static TorchSharp.torch;

namespace PatrickStar.Models.Gpt;

/// <summary>
/// A GPT training run assembled from a <see cref="TrainingConfig"/>: model sizes resolved and
/// checked, data loaded, memory checked before allocation, the model built (seeded) and handed to
/// the configured engine, and a trainer over it. The library's one-call entry point.
/// </summary>
public sealed class GptRun : IDisposable
{
    public TrainingConfig Config { get; }
    public GptConfig ModelConfig { get; }
    public TokenDataset Data { get; }
    public GptModel Model { get; }
    public ITrainingEngine Engine { get; }
    public Trainer Trainer { get; }
    public Device Device { get; }

    private GptRun(TrainingConfig config, GptConfig modelConfig, TokenDataset data, GptModel model, ITrainingEngine engine, Device device)
    {
        Config = config;
        ModelConfig = modelConfig;
        Data = data;
        Model = model;
        Engine = engine;
        Device = device;
        Trainer = new Trainer(config, engine, data, modelConfig.TrainingFlops((long)config.MicroBatchSize * config.GradientAccumulationSteps, config.SequenceLength));
    }

    /// <summary>Sizes of the configured model (preset with overrides), validated against the sequence length.</summary>
    public static GptConfig ResolveModel(TrainingConfig config)
    {
        var m = config.Model;
        var resolved = ModelZoo.Resolve(m.Preset, m.VocabSize, m.ContextLength, m.Layers, m.Hidden, m.Heads, m.Dropout);
        if (config.SequenceLength > resolved.ContextLength)
            throw new ConfigException($"seq_len = {config.SequenceLength} exceeds the model's context length n_positions = {resolved.ContextLength}" +
                                      $"{(m.Preset is null ? "" : $" (preset '{m.Preset}')")}. Use --seq {resolved.ContextLength} or less, or a larger model.n_positions.");
        return resolved;
    }

    /// <summary>The configured data: the user's files, or the built-in generated corpus.</summary>
    public static TokenDataset LoadData(TrainingConfig config, ITextTokenizer tokenizer)
    {
        if (config.Data.Files.Count > 0)
            return TokenDataset.FromFiles(config.Data.Files, tokenizer, config.Data.ValidationFraction);
        string text = DefaultCorpus.Generate(DefaultCorpus.DefaultSeed, DefaultCorpus.DefaultLength);
        string cacheKey = Path.Combine(Path.GetTempPath(), $"pstar-builtin-corpus-{DefaultCorpus.DefaultSeed}-{DefaultCorpus.DefaultLength}.txt");
        return TokenDataset.FromText(text, "the built-in corpus", tokenizer, config.Data.ValidationFraction, cacheKey);
    }

    public static GptRun Create(TrainingConfig config, TokenDataset? data = null)
    {
        ConfigLoader.Validate(config);
        TorchRuntime.EnsureLoaded();
        TorchRuntime.ConfigureThreads(config.Threads);
        var device = TorchRuntime.ResolveDevice(config.Device);
        var modelConfig = ResolveModel(config);

        EnsureFits(config, modelConfig, device);

        data ??= LoadData(config, Gpt2Tokenizer.Instance);
        if (data.VocabSize > modelConfig.VocabSize)
            throw new ConfigException($"the data's tokenizer has {data.VocabSize:N0} tokens but model.vocab_size = {modelConfig.VocabSize:N0}; use a vocab_size of at least {data.VocabSize:N0}.");
        data.EnsureFits(config.SequenceLength);

        manual_seed(config.Seed);
        var model = new GptModel(modelConfig);
        model.Transformer.CheckpointBlocks = config.ActivationCheckpointing;
        try
        {
            using var sample = zeros(1, 1, dtype: ScalarType.Int64);
            var engine = EngineFactory.Create(model, config, device, sample);
            return new GptRun(config, modelConfig, data, model, engine, device);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Refuses, before anything is allocated, a run the estimator says cannot fit: model data in the engine's real
    /// chunk layout plus the activation peak against the device and host budgets the engine would take (on a CPU
    /// device the plain engine's budget is device_memory or else the machine's available memory).
    /// </summary>
    public static MemoryEstimate EnsureFits(TrainingConfig config, GptConfig modelConfig, Device device)
    {
        long? deviceBudget;
        long hostBudget;
        if (config.Engine == "chunked")
        {
            var options = PatrickStar.Engine.ChunkEngineOptions.From(config, device);
            deviceBudget = options.DeviceMemory;
            hostBudget = options.HostMemory;
        }
        else
        {
            // CUDA memory cannot be queried through TorchSharp: without a configured budget the device is not checked.
            deviceBudget = config.Chunks.DeviceMemory ?? (device.type == TorchSharp.DeviceType.CPU ? MemoryMeter.AvailableHostMemory() : null);
            hostBudget = config.Chunks.HostMemory ?? 0;
        }
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, modelConfig, deviceBudget, hostBudget));
        if (!estimate.Fits)
            throw new PatrickStar.Profiling.InsufficientMemoryException(
                $"model '{config.Model.Preset ?? "custom"}' with the {config.Engine} engine cannot be trained in the memory given. " +
                estimate.Explain() + Environment.NewLine + "  (`pstar estimate` with the same flags shows the full breakdown.)");
        return estimate;
    }

    public void Dispose()
    {
        Engine.Dispose();
        Model.Dispose();
    }
}
