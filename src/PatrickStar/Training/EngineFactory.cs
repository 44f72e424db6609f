using PatrickStar.Config;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>Builds the engine named by <see cref="TrainingConfig.Engine"/>.</summary>
public static class EngineFactory
{
    public static ITrainingEngine Create(Module<Tensor, Tensor> model, TrainingConfig config, Device device) =>
        config.Engine switch
        {
            "plain" => new PlainEngine(model, config, device),
            _ => throw new ArgumentException($"engine '{config.Engine}' is not known; use one of: {string.Join(", ", ConfigLoader.Engines)}."),
        };

    /// <summary>Model-data bytes per parameter that the named engine keeps on the compute device.</summary>
    public static int DeviceBytesPerParameter(TrainingConfig config) => PlainEngine.BytesPerParameter(config.Precision);
}
