using PatrickStar.Config;

namespace PatrickStar.Optimizer;

/// <summary>What one optimizer step does with the gradients, decided from their (scaled) global norm.</summary>
/// <param name="GradNorm">The true global norm (the scaled norm divided by the loss scale).</param>
/// <param name="Skip">Non-finite gradients: no update this step.</param>
/// <param name="GradientMultiplier">What the stored gradients are multiplied by before Adam: clipping factor / loss scale.</param>
/// <param name="LossScale">The scale the gradients were computed with.</param>
public readonly record struct StepDecision(double GradNorm, bool Skip, double GradientMultiplier, double LossScale);

/// <summary>The scaler's state, saved in checkpoints.</summary>
public sealed record LossScalerState(double Scale, int CleanSteps, int HysteresisLeft);

/// <summary>
/// Loss scaling for fp16: the loss is multiplied by <see cref="Scale"/> before backward so that small
/// gradients survive fp16, and the optimizer divides it out again. Dynamic mode: an overflowing step
/// (inf/NaN in the gradients) is always skipped; the scale is halved only once <c>hysteresis</c>
/// overflows have been seen since the scale last changed, so one stray overflow does not cost a factor
/// of two; after <c>window</c> clean steps in a row the scale doubles and the tolerance is restored.
/// fp32 and bf16 use <see cref="None"/> (scale 1, never changes), so both engines share one step rule.
/// </summary>
public sealed class LossScaler
{
    private readonly bool dynamic;
    private readonly int window;
    private readonly int hysteresis;
    private readonly double minScale;

    public LossScaler(double scale, bool dynamic, int window = 1000, int hysteresis = 2, double minScale = 1)
    {
        if (!(scale > 0) || !double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "the loss scale must be a finite number > 0");
        if (window < 1) throw new ArgumentOutOfRangeException(nameof(window), window, "must be >= 1");
        if (hysteresis < 1) throw new ArgumentOutOfRangeException(nameof(hysteresis), hysteresis, "must be >= 1");
        Scale = scale;
        this.dynamic = dynamic;
        this.window = window;
        this.hysteresis = hysteresis;
        this.minScale = minScale;
        HysteresisLeft = hysteresis;
    }

    /// <summary>No scaling (fp32, bf16): scale 1 forever; non-finite gradients still skip the step.</summary>
    public static LossScaler None() => new(1, dynamic: false);

    /// <summary>The scaler a config asks for: fp16 gets a static or dynamic one, other precisions <see cref="None"/>.</summary>
    public static LossScaler From(TrainingConfig config)
    {
        if (config.Precision != Precision.Fp16) return None();
        var f = config.Fp16;
        return f.LossScale > 0
            ? new LossScaler(f.LossScale, dynamic: false)
            : new LossScaler(Math.Pow(2, f.InitialScalePower), dynamic: true, f.LossScaleWindow, f.Hysteresis, f.MinLossScale);
    }

    public double Scale { get; private set; }
    public bool IsDynamic => dynamic;
    public int CleanSteps { get; private set; }
    public int HysteresisLeft { get; private set; }

    /// <summary>Decides the step from the norm of the scaled gradients and updates the scale for the next step.</summary>
    public StepDecision Decide(double scaledNorm, double clipThreshold)
    {
        double scale = Scale;
        bool overflow = !double.IsFinite(scaledNorm);
        Update(overflow);
        if (overflow) return new StepDecision(scaledNorm, Skip: true, 0, scale);
        double norm = scaledNorm / scale;
        return new StepDecision(norm, Skip: false, GradientClipping.Factor(norm, clipThreshold) / scale, scale);
    }

    /// <summary>Records one step's outcome.</summary>
    public void Update(bool overflow)
    {
        if (!dynamic) return;
        if (overflow)
        {
            CleanSteps = 0;
            if (HysteresisLeft > 1)
            {
                HysteresisLeft--;
                return;
            }
            Scale = Math.Max(Scale / 2, minScale);
            return;
        }
        if (++CleanSteps < window) return;
        Scale *= 2;
        CleanSteps = 0;
        HysteresisLeft = hysteresis;
    }

    public LossScalerState State => new(Scale, CleanSteps, HysteresisLeft);

    public void Restore(LossScalerState state)
    {
        Scale = state.Scale;
        CleanSteps = state.CleanSteps;
        HysteresisLeft = state.HysteresisLeft;
    }
}
