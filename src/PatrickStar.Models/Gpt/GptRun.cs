using PatrickStar.Checkpoints;
using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Llama;
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
    /// <summary>The sizes every family shares; <see cref="Choice"/> has the whole model (a LLaMA's too).</summary>
    public GptConfig ModelConfig => Choice.Sizes;
    public ModelChoice Choice { get; }
    public TokenDataset Data { get; }
    public TorchSharp.torch.nn.Module<Tensor, Tensor> Model { get; }
    public ITrainingEngine Engine { get; }
    public Trainer Trainer { get; }
    public Device Device { get; }

    /// <summary>The data-parallel job this run is one rank of; null when it trains alone.</summary>
    public ICommunicator? Communicator { get; }

    /// <summary>This run's rank (0 alone) and the number of ranks (1 alone).</summary>
    public int Rank => Communicator?.Rank ?? 0;
    public int Ranks => Communicator?.Size ?? 1;

    private readonly ICommunicator? ownedCommunicator; // opened by Create (mpirun), closed with the run

    private GptRun(TrainingConfig config, ModelChoice modelConfig, TokenDataset data, TorchSharp.torch.nn.Module<Tensor, Tensor> model, ITrainingEngine engine,
        Device device, ICommunicator? communicator, ICommunicator? ownedCommunicator)
    {
        Config = config;
        Choice = modelConfig;
        Data = data;
        Model = model;
        Engine = engine;
        Device = device;
        Communicator = communicator;
        this.ownedCommunicator = ownedCommunicator;
        Trainer = new Trainer(config, engine, data, modelConfig.TrainingFlops((long)config.MicroBatchSize * config.GradientAccumulationSteps, config.SequenceLength),
            communicator);
    }

    /// <summary>The global random generator seeds model construction: ranks built as threads of one process take turns.</summary>
    private static readonly object ModelConstruction = new();

    /// <summary>Sizes of the configured model (preset with overrides), validated against the sequence length.</summary>
    public static GptConfig ResolveModel(TrainingConfig config) => ResolveChoice(config).Sizes;

    /// <summary>The configured model of either family (the preset decides), validated against the sequence length.</summary>
    public static ModelChoice ResolveChoice(TrainingConfig config)
    {
        var m = config.Model;
        var choice = ModelFamilies.Resolve(m);
        var resolved = choice.Sizes;
        if (config.SequenceLength > resolved.ContextLength)
            throw new ConfigException($"seq_len = {config.SequenceLength} exceeds the model's context length n_positions = {resolved.ContextLength}" +
                                      $"{(m.Preset is null ? "" : $" (preset '{m.Preset}')")}. Use --seq {resolved.ContextLength} or less, or a larger model.n_positions.");
        return choice;
    }

    /// <summary>The configured data: the user's files, or the built-in generated corpus.</summary>
    public static TokenDataset LoadData(TrainingConfig config, ITextTokenizer tokenizer)
    {
        if (config.Data.Files.Count > 0)
            return TokenDataset.FromFiles(config.Data.Files, tokenizer, config.Data.ValidationFraction, DataOptionsOf(config));
        string text = DefaultCorpus.Generate(DefaultCorpus.DefaultSeed, DefaultCorpus.DefaultLength);
        string cacheKey = Path.Combine(Path.GetTempPath(), $"pstar-builtin-corpus-{DefaultCorpus.DefaultSeed}-{DefaultCorpus.DefaultLength}.txt");
        return TokenDataset.FromText(text, "the built-in corpus", tokenizer, config.Data.ValidationFraction, cacheKey, config.Data.CacheDir);
    }

    /// <summary>How the configured data files are read.</summary>
    public static DataOptions DataOptionsOf(TrainingConfig config) =>
        new() { TextField = config.Data.TextField, BinDType = config.Data.BinDType, CacheDir = config.Data.CacheDir };

    /// <summary>The configured tokenizer (data.tokenizer; by default an --init-from folder's own, else gpt2).</summary>
    public static ITextTokenizer TokenizerOf(TrainingConfig config, string? initFrom) =>
        Tokenizers.Resolve(config.Data.Tokenizer, initFrom is not null && Directory.Exists(initFrom) ? initFrom : null);

    /// <param name="initFrom">A Hugging Face GPT-2 safetensors file whose weights the model starts from (fine-tuning).</param>
    /// <param name="resumeFrom">A checkpoint (or a save directory: its latest) to continue exactly where it stopped.</param>
    /// <param name="communicator">The data-parallel job this process (or thread) is one rank of. Default: the MPI job when
    /// mpirun started this process (the run then owns and closes it), else none.</param>
    public static GptRun Create(TrainingConfig config, TokenDataset? data = null, string? initFrom = null, string? resumeFrom = null,
        ICommunicator? communicator = null)
    {
        bool owns = false;
        if (communicator is null && Communicators.LauncherSize() is not null)
        {
            communicator = Communicators.Create();
            owns = true;
        }
        try
        {
            return Create(config, data, initFrom, resumeFrom, communicator is { Size: > 1 } ? communicator : null, owns ? communicator : null);
        }
        catch
        {
            if (owns) communicator!.Dispose();
            throw;
        }
    }

    private static GptRun Create(TrainingConfig config, TokenDataset? data, string? initFrom, string? resumeFrom, ICommunicator? comm, ICommunicator? owned)
    {
        EnsureOneStartingPoint(resumeFrom, initFrom);
        (string Dir, CheckpointModelSizes Model, SavedState State, List<string> Files)? inspected = null;
        if (resumeFrom is not null)
        {
            inspected = TrainingCheckpoint.Inspect(resumeFrom); // verified once, before anything is built; Load reuses it
            var resumed = inspected.Value.State;
            // The schedule's horizon belongs to the run that started it, not to how many steps this invocation asks for.
            config.Scheduler.TotalSteps ??= resumed.ScheduleHorizon;
            if (resumed.StepsDone >= config.Steps)
                throw new ConfigException($"the checkpoint has already done {resumed.StepsDone} steps and this run asks for steps = {config.Steps}; " +
                                          $"raise --steps above {resumed.StepsDone} to train further.");
        }
        ConfigLoader.Validate(config);
        TorchRuntime.EnsureLoaded();
        TorchRuntime.ConfigureThreads(config.Threads);
        // Several GPUs on one machine: rank r of a job takes cuda:(local rank r); the engine reads the same key.
        config.Device = LocalRankDevice.For(config.Device, comm?.Size ?? 1, null, () => cuda.is_available() ? cuda.device_count() : 0);
        var device = TorchRuntime.ResolveDevice(config.Device);
        var modelConfig = ResolveChoice(config);

        EnsureMachineHolds(config, EnsureFits(config, modelConfig, device, comm?.Size ?? 1), device);

        if (data is null)
        {
            var tokenizer = TokenizerOf(config, initFrom);
            Tokenizers.EnsureFitsModel(tokenizer, modelConfig.Sizes.VocabSize, initFrom ?? "model.vocab_size");
            data = LoadData(config, tokenizer);
        }
        if (data.VocabSize > modelConfig.Sizes.VocabSize)
            throw new ConfigException($"the data's tokenizer has {data.VocabSize:N0} tokens but model.vocab_size = {modelConfig.Sizes.VocabSize:N0}; use a vocab_size of at least {data.VocabSize:N0}.");
        data.EnsureFits(config.SequenceLength);

        if (initFrom is not null && modelConfig.IsLlama != HuggingFaceLlamaFolder.IsLlamaSource(initFrom))
            throw new ConfigException($"--init-from {initFrom}: the weights are {(modelConfig.IsLlama ? "not a LLaMA's" : "a LLaMA's")} but the run's model is " +
                                      $"{(modelConfig.IsLlama ? "a LLaMA" : "a GPT-2")}; drop --model/model.preset so that the weights choose the model.");
        TorchSharp.torch.nn.Module<Tensor, Tensor> model;
        ITrainingEngine? engine = null;
        // The chunk engine builds the model streamed: placeholder parameters, each initialised (or read from --init-from)
        // in its chunk slot; a rank of a data-parallel job fills only the chunks it keeps.
        bool streamed = config.Engine == "chunked";
        using var sample = zeros(1, 1, dtype: ScalarType.Int64);
        lock (ModelConstruction)
        {
            manual_seed(config.Seed);
            // The activation type is set before the engine: the chunk engine runs the model once to learn the parameter order.
            using (streamed ? ParameterPlaceholders.Scope(PlainEngine.ComputeType(config.Precision)) : null)
                model = modelConfig.Build(config.ActivationCheckpointing, PlainEngine.ActivationType(config.Precision));
            // Streamed, the initial values are drawn while the engine packs: still under the lock that orders the draws.
            try
            {
                if (streamed)
                {
                    using var weights = initFrom is null ? null : PretrainedWeights.Open(model, initFrom);
                    engine = EngineFactory.Create(model, config, device, sample, comm, weights ?? (IParameterInitializer)model);
                }
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        try
        {
            if (!streamed && initFrom is not null && model is LlamaForCausalLM llama) HuggingFaceLlamaFolder.Import(llama, initFrom);
            else if (!streamed && initFrom is not null) HuggingFaceGpt2.Import((GptModel)model, initFrom);
            engine ??= EngineFactory.Create(model, config, device, sample, comm);
            if (comm is not null) comm.AllAgree(SetupFingerprint(config, modelConfig.Sizes, engine), "the hash of (config, model sizes, chunk layout)");
            var run = new GptRun(config, modelConfig, data, model, engine, device, comm, owned);
            if (resumeFrom is not null)
            {
                run.ResumedFrom = TrainingCheckpoint.Load(inspected!.Value, run.CheckpointSizes, engine, run.Trainer);
                run.ResumedAtStep = run.Trainer.StepsDone;
            }
            // Every rank built the same model from the same seed; from here each rank of an MPI job draws its own dropout
            // masks (rank 0 keeps the run's stream, so its checkpoints hold the state a one-process run would have).
            if (comm is { Size: > 1, Rank: > 0 } && comm.Backend.StartsWith("mpi", StringComparison.Ordinal))
                manual_seed((long)(new SplitMix64(config.Seed ^ (31L * run.Trainer.StepsDone + comm.Rank) * 0x5851F42D4C957F2DL).Next() >> 1));
            return run;
        }
        catch
        {
            engine?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>A run continues a checkpoint or starts from a weights file, not both (the file would be silently ignored).</summary>
    public static void EnsureOneStartingPoint(string? resumeFrom, string? initFrom)
    {
        if (resumeFrom is not null && initFrom is not null)
            throw new ConfigException($"--resume {resumeFrom} continues a checkpoint's weights and --init-from {initFrom} starts from other weights: give only one.");
    }

    /// <summary>
    /// What every rank must agree on before training: the whole config, the model sizes and the chunk layout. The config
    /// is included whole because a rank with another seed or learning rate would silently train another model.
    /// </summary>
    public static string SetupFingerprint(TrainingConfig config, GptConfig modelConfig, ITrainingEngine engine)
    {
        var text = new System.Text.StringBuilder(ConfigLoader.ToJson(config));
        text.Append($"|model {modelConfig.VocabSize} {modelConfig.ContextLength} {modelConfig.Layers} {modelConfig.Hidden} {modelConfig.Heads}");
        if (engine is PatrickStar.Engine.ChunkedEngine chunked)
            text.Append($"|chunks {chunked.Layout.ChunkSize} x {chunked.ChunkCount}: {string.Join(",", chunked.Layout.UsedPerChunk)}");
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text.ToString())))[..16];
    }

    /// <summary>The checkpoint this run continues from, if any.</summary>
    public string? ResumedFrom { get; private set; }

    /// <summary>The step the run was resumed at (0 for a fresh run): a save at this step would only repeat what exists.</summary>
    public int ResumedAtStep { get; private set; }

    /// <summary>Whether a step has completed since the run started or was resumed, i.e. whether a save would hold anything new.</summary>
    public bool HasUnsavedSteps => Trainer.StepsDone > ResumedAtStep;

    /// <summary>The model sizes as checkpoints record them.</summary>
    public CheckpointModelSizes CheckpointSizes =>
        new(ModelConfig.VocabSize, ModelConfig.ContextLength, ModelConfig.Layers, ModelConfig.Hidden, ModelConfig.Heads);

    /// <summary>
    /// Saves a checkpoint of the run as it stands now into <paramref name="saveDir"/> (default: checkpoint.save_dir). Right
    /// after resuming, the checkpoint resumed from already holds this state: saving onto it again is skipped (its path is returned).
    /// </summary>
    public string SaveCheckpoint(string? saveDir = null, TrainingCheckpoint.SaveOptions? options = null)
    {
        string dir = saveDir ?? Config.Checkpoint.SaveDir
                     ?? throw new InvalidOperationException("no save directory: pass one or set checkpoint.save_dir (--save-dir).");
        string target = Path.GetFullPath(Path.Combine(dir, SaveDirectory.StepDirName(Trainer.StepsDone)));
        if (ResumedFrom is not null && !HasUnsavedSteps && target == Path.GetFullPath(ResumedFrom)) return ResumedFrom;
        return TrainingCheckpoint.Save(dir, Config, CheckpointSizes, Engine, Trainer,
            options ?? new TrainingCheckpoint.SaveOptions(Config.Checkpoint.KeepLast), Communicator);
    }

    /// <summary>Saves every checkpoint.save_every steps while the trainer runs; <paramref name="saved"/> hears of each.</summary>
    public void SaveCheckpointsPeriodically(Action<string>? saved = null)
    {
        int every = Config.Checkpoint.SaveEvery;
        if (every <= 0 || Config.Checkpoint.SaveDir is null) return;
        Trainer.StepCompleted += m =>
        {
            if (m.Step % every != 0 || m.Step == Config.Steps) return; // the final save is the caller's
            var path = SaveCheckpoint();
            saved?.Invoke(path);
        };
    }

    /// <summary>
    /// Refuses, before anything is allocated, a run the estimator says cannot fit: model data in the engine's real
    /// chunk layout (sharded over <paramref name="ranks"/>) plus the non-model peaks against the device and host budgets
    /// the engine would take (<see cref="EstimateBudgets.For"/>, the same defaults as `pstar estimate`). With a disk tier,
    /// the host need is what stays in memory with the chunks the engine puts on disk, and the chunk files must fit disk_memory.
    /// </summary>
    public static MemoryEstimate EnsureFits(TrainingConfig config, GptConfig modelConfig, Device device, int ranks = 1) =>
        EnsureFits(config, new ModelChoice(modelConfig, null), device, ranks);

    /// <summary>As above, for either family.</summary>
    public static MemoryEstimate EnsureFits(TrainingConfig config, ModelChoice modelConfig, Device device, int ranks = 1)
    {
        var (deviceBudget, hostBudget) = EstimateBudgets.For(config, device);
        bool disk = config.Chunks.DiskDir is not null && config.Engine == "chunked";
        var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, modelConfig, deviceBudget, hostBudget, ranks), suggestKnobs: !disk);
        // With a disk tier the host holds what the disk tier leaves it (DiskEstimator: what the engine spills and when).
        if (disk)
        {
            var onDisk = DiskEstimator.Estimate(estimate, config.Chunks.DiskMemory, null, null);
            if (onDisk.Refusal is string refusal) throw new PatrickStar.Profiling.InsufficientMemoryException(refusal);
            estimate = DiskEstimator.WithDisk(estimate, onDisk);
        }
        if (!estimate.Fits)
            throw new PatrickStar.Profiling.InsufficientMemoryException(
                $"model '{config.Model.Preset ?? "custom"}' with the {config.Engine} engine cannot be trained in the memory given. " +
                estimate.Explain() + Environment.NewLine + "  (`pstar estimate` with the same flags shows the full breakdown.)");
        return estimate;
    }

    /// <summary>Refuses a run whose tiers, with the allocator's allowance and the runtime, exceed what the machine can give now (<see cref="MachineMemoryCheck"/>).</summary>
    public static void EnsureMachineHolds(TrainingConfig config, MemoryEstimate estimate, Device device)
    {
        var now = MemoryMeter.Snapshot();
        if (MachineMemoryCheck.Shortfall(estimate, device.type == TorchSharp.DeviceType.CPU, MemoryMeter.RuntimeBaselineResident ?? now.Resident,
                now.Resident, MemoryMeter.AvailableHostMemory(), CgroupMemory.Room()) is { } shortfall)
            throw new PatrickStar.Profiling.InsufficientMemoryException(
                $"model '{config.Model.Preset ?? "custom"}' with the {config.Engine} engine cannot be trained on this machine now: {shortfall}");
    }

    public void Dispose()
    {
        // The model goes next: the engine need not copy the parameters out of their chunks first.
        if (Engine is ChunkedEngine chunked) chunked.KeepParametersOnDispose = false;
        Engine.Dispose();
        Model.Dispose();
        ownedCommunicator?.Dispose();
    }
}
