using PatrickStar.Config;

namespace PatrickStar.Optimizer;

/// <summary>
/// Learning rate as a function of the optimizer step (0-based): constant, or a linear warmup from
/// 0 to the peak followed by cosine or linear decay to min_lr (or min_lr_ratio × peak) at total_steps, then flat; or one of
/// DeepSpeed's schedules (<see cref="DeepSpeedSchedules"/>).
/// </summary>
public sealed class LearningRateSchedule
{
    private readonly ScheduleType type;
    private readonly double peak;
    private readonly int warmup;
    private readonly int total;
    private readonly double floor;
    private readonly Func<int, double>? deepSpeed;

    /// <param name="minLr">The floor as an absolute rate; when given it replaces <paramref name="minLrRatio"/> (taken as is, so
    /// that the floor is exactly the configured rate rather than peak × (minLr / peak)).</param>
    public LearningRateSchedule(ScheduleType type, double peak, int warmupSteps, int totalSteps, double minLrRatio, double? minLr = null)
    {
        if (totalSteps < 1) throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "the schedule needs at least one step");
        if (IsDeepSpeed(type)) throw new ArgumentException($"{type} takes DeepSpeed's parameters: build it with From(config).", nameof(type));
        this.type = type;
        this.peak = peak;
        warmup = type == ScheduleType.Constant ? 0 : warmupSteps;
        total = totalSteps;
        floor = minLr ?? peak * minLrRatio;
    }

    private LearningRateSchedule(Func<int, double> deepSpeedSchedule) => deepSpeed = deepSpeedSchedule;

    public static LearningRateSchedule From(TrainingConfig c) =>
        IsDeepSpeed(c.Scheduler.Type)
            ? new(DeepSpeedSchedules.For(c))
            : new(c.Scheduler.Type, c.Optimizer.LearningRate, c.Scheduler.WarmupSteps, c.Scheduler.TotalSteps ?? c.Steps, c.Scheduler.MinLrRatio,
                c.Scheduler.MinLr);

    private static bool IsDeepSpeed(ScheduleType type) =>
        type is ScheduleType.WarmupLR or ScheduleType.WarmupDecayLR or ScheduleType.WarmupCosineLR;

    public double At(int step)
    {
        if (deepSpeed is not null) return deepSpeed(step);
        if (type == ScheduleType.Constant) return peak;
        if (step < warmup) return peak * (step + 1) / warmup;
        if (step >= total) return floor;
        double progress = (double)(step - warmup) / Math.Max(1, total - warmup);
        double shape = type == ScheduleType.WarmupCosine ? 0.5 * (1 + Math.Cos(Math.PI * progress)) : 1 - progress;
        return floor + (peak - floor) * shape;
    }
}
