using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Profiling;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>Builds the engine named by <see cref="TrainingConfig.Engine"/>.</summary>
public static class EngineFactory
{
    /// <param name="sampleInput">A small input the chunk engine runs once to learn the order in which parameters are used.</param>
    /// <param name="communicator">The data-parallel job (only the chunked engine shards across ranks).</param>
    public static ITrainingEngine Create(Module<Tensor, Tensor> model, TrainingConfig config, Device device, Tensor? sampleInput = null,
        ICommunicator? communicator = null)
    {
        if (communicator is { Size: > 1 } && config.Engine != "chunked")
            throw new ConfigException($"data parallelism needs --engine chunked (engine = \"chunked\"): this job has {communicator.Size} ranks " +
                                      $"and the {config.Engine} engine trains on one. Add --engine chunked, or launch a single process.");
        return config.Engine switch
        {
            "plain" => new PlainEngine(model, config, device),
            "chunked" => new ChunkedEngine(model, config, device, ChunkEngineOptions.From(config, device), sampleInput, communicator),
            _ => throw new ArgumentException($"engine '{config.Engine}' is not known; use one of: {string.Join(", ", ConfigLoader.Engines)}."),
        };
    }

    /// <summary>Refuses, before anything is allocated, a model whose model data cannot fit where the engine keeps it.</summary>
    public static void EnsureModelFits(TrainingConfig config, long parameters, string what, Device device)
    {
        if (config.Engine == "chunked")
        {
            var options = ChunkEngineOptions.From(config, device);
            int perParam = ChunkEngineOptions.HostBytesPerParameter(config);
            long needed = parameters * perParam;
            long budget = options.HostMemory;
            if (needed > budget)
                throw new PatrickStar.Profiling.InsufficientMemoryException(
                    $"{what} needs {Bytes.Format(needed)} ({needed:N0} bytes: {parameters:N0} parameters x {perParam} B of chunked model data " +
                    $"in {PrecisionNames.Name(config.Precision)}) on the host tier, but host_memory is {Bytes.Format(budget)} ({budget:N0} bytes). " +
                    "Raise host_memory (--host-memory), or choose a smaller model.");
            return;
        }
        int bytesPerParam = PlainEngine.BytesPerParameter(config.Precision);
        MemoryCheck.EnsureFits(what, parameters * bytesPerParam,
            $"{parameters:N0} parameters x {bytesPerParam} B of model data in {PrecisionNames.Name(config.Precision)}", device);
    }
}
