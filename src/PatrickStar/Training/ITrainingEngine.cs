using PatrickStar.Optimizer;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Training;

/// <summary>What one optimizer step did.</summary>
/// <param name="GradNorm">Global L2 norm of the gradients before clipping.</param>
/// <param name="Skipped">True when the engine skipped the update (e.g. non-finite gradients).</param>
public readonly record struct StepOutcome(double GradNorm, bool Skipped);

/// <summary>The per-parameter optimizer state an engine keeps: fp32 master weight, Adam momentum, Adam variance.</summary>
public enum StateKind { Master, Momentum, Variance }

/// <summary>
/// Where parameters, gradients and optimizer state live, and how they are updated. The trainer's
/// loop is the same for every engine: forward through <see cref="Model"/>, <see cref="Backward"/>
/// once per micro-batch, then <see cref="Step"/>. The plain engine keeps everything on the compute
/// device; the chunk-based engine moves chunks between memory tiers behind the same calls.
/// </summary>
public interface ITrainingEngine : IDisposable
{
    /// <summary>Short name shown to users ("plain").</summary>
    string Name { get; }

    /// <summary>The model, ready to be called on inputs placed on <see cref="Device"/>.</summary>
    Module<Tensor, Tensor> Model { get; }

    Device Device { get; }

    /// <summary>Back-propagates a micro-batch's (already averaged) loss, accumulating gradients.</summary>
    void Backward(Tensor loss);

    /// <summary>Clips, updates the weights with the given learning rate and clears the gradients.</summary>
    StepOutcome Step(double learningRate);

    /// <summary>Engine-specific figures reported with every step (bytes moved, chunks resident...).</summary>
    EngineStatistics Statistics { get; }

    // ---- Optimizer state, for checkpoints ----

    /// <summary>Names of the parameters whose optimizer state this engine (this rank) holds.</summary>
    IReadOnlyList<string> ParameterNames { get; }

    /// <summary>A host fp32 copy of one parameter's master weight, momentum or variance, in the parameter's shape.</summary>
    Tensor ReadState(string name, StateKind kind);

    /// <summary>Overwrites one parameter's state; writing the master also refreshes the compute-precision parameter.</summary>
    void WriteState(string name, StateKind kind, Tensor value);

    /// <summary>Adam steps taken (bias correction).</summary>
    long OptimizerStepCount { get; set; }

    /// <summary>The loss scaler (scale 1 and inert unless fp16).</summary>
    LossScaler Scaler { get; }
}
