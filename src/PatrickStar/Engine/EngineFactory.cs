using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Training;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Engine;

/// <summary>Builds the engine named by <see cref="TrainingConfig.Engine"/>.</summary>
public static class EngineFactory
{
    /// <param name="sampleInput">A small input the chunk engine runs once to learn the order in which parameters are used.</param>
    /// <param name="communicator">The data-parallel job (only the chunked engine shards across ranks).</param>
    /// <param name="initializer">For a model built with placeholder parameters: the chunk engine initialises each one in its slot.</param>
    public static ITrainingEngine Create(Module<Tensor, Tensor> model, TrainingConfig config, Device device, Tensor? sampleInput = null,
        ICommunicator? communicator = null, Chunks.IParameterInitializer? initializer = null)
    {
        if (communicator is { Size: > 1 } && config.Engine != "chunked")
            throw new ConfigException($"data parallelism needs --engine chunked (engine = \"chunked\"): this job has {communicator.Size} ranks " +
                                      $"and the {config.Engine} engine trains on one. Add --engine chunked, or launch a single process.");
        return config.Engine switch
        {
            "plain" => new PlainEngine(model, config, device),
            "chunked" => new ChunkedEngine(model, config, device, ChunkEngineOptions.From(config, device), sampleInput, communicator, initializer),
            _ => throw new ArgumentException($"engine '{config.Engine}' is not known; use one of: {string.Join(", ", ConfigLoader.Engines)}."),
        };
    }
}
