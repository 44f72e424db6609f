using PatrickStar.Config;

namespace PatrickStar.Optimizer;

/// <summary>
/// DeepSpeed's WarmupLR, WarmupDecayLR and WarmupCosineLR, written from their documented formulas. The rate of optimizer
/// step k (0-based) is DeepSpeed's at last_batch_iteration k, so step 0 runs at the warm-up's start (warmup_min_lr, or
/// warmup_min_ratio x peak). Log warm-up: start + (peak - start) x ln(k + 1) / ln(warmup_num_steps).
/// </summary>
public static class DeepSpeedSchedules
{
    public static Func<int, double> For(TrainingConfig c)
    {
        var s = c.Scheduler;
        double peak = c.Optimizer.LearningRate;
        int warmup = s.WarmupSteps;
        int total = s.TotalSteps ?? c.Steps;
        return s.Type switch
        {
            ScheduleType.WarmupLR => step => Between(s.WarmupMinLr, peak, WarmupFraction(step, warmup, s.WarmupType)),
            ScheduleType.WarmupDecayLR => step => Between(s.WarmupMinLr, peak,
                step < warmup ? WarmupFraction(step, warmup, s.WarmupType) : Math.Max(0.0, (double)(total - step) / Math.Max(1, total - warmup))),
            ScheduleType.WarmupCosineLR => step => peak * CosineRatio(step, warmup, total, s),
            _ => throw new ArgumentException($"{s.Type} is not a DeepSpeed schedule.", nameof(c)),
        };
    }

    private static double Between(double start, double end, double fraction) => start + (end - start) * fraction;

    /// <summary>How far through the warm-up step k is: 0 at its start, 1 from warmup_num_steps on.</summary>
    private static double WarmupFraction(int step, int warmup, WarmupType type)
    {
        if (step >= warmup) return 1.0;
        return type == WarmupType.Log
            ? (warmup > 1 ? Math.Log(step + 1) / Math.Log(warmup) : 1.0) // ln(1) / ln(1) would be 0/0: one warm-up step is no warm-up
            : (double)step / warmup;
    }

    private static double CosineRatio(int step, int warmup, int total, SchedulerSection s)
    {
        if (step < warmup)
            return s.WarmupMinRatio + (1 - s.WarmupMinRatio) * WarmupFraction(step, warmup, s.WarmupType);
        double progress = (double)(step - warmup + 1) / Math.Max(1, total - warmup);
        double cosine = (1 + Math.Cos(Math.PI * Math.Min(1.0, progress))) / 2;
        return Math.Max(0.0, s.CosMinRatio + (1 - s.CosMinRatio) * cosine);
    }
}
