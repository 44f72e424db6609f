using System.Diagnostics;
using PatrickStar.Config;
using PatrickStar.Data;
using PatrickStar.Distributed;
using PatrickStar.Optimizer;
using PatrickStar.Profiling;
using PatrickStar.Timing;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Training;

/// <summary>Everything measured at one optimizer step.</summary>
public sealed record StepMetrics(
    int Step,
    int TotalSteps,
    double Loss,
    double? ValidationLoss,
    double LearningRate,
    double GradNorm,
    bool Skipped,
    double StepSeconds,
    double TokensPerSecond,
    double Tflops,
    TimeSpan Elapsed,
    TimeSpan Remaining,
    MemorySnapshot Memory,
    EngineStatistics EngineStatistics,
    IReadOnlyDictionary<StepPhase, double>? Phases = null);

/// <summary>How a run ended.</summary>
public sealed record TrainingSummary(
    int StepsDone,
    double FirstLoss,
    double LastLoss,
    double? FirstValidationLoss,
    double? LastValidationLoss,
    double MedianStepSeconds,
    double MedianTokensPerSecond,
    double MedianTflops,
    TimeSpan Elapsed,
    long PeakResidentBytes,
    bool Cancelled,
    MemorySnapshot? FinalMemory = null);

/// <summary>Where a trainer is: optimizer steps done and the data sampler's state (checkpoints save it).</summary>
public sealed record TrainerPosition(int StepsDone, ulong BatchRngState);

/// <summary>The training loss became NaN or infinite.</summary>
public sealed class TrainingDivergedException : Exception
{
    public TrainingDivergedException(string message) : base(message) { }
}

/// <summary>
/// The training loop, read top to bottom: for each step, the learning rate from the schedule,
/// micro-batches through forward and backward, one optimizer step, metrics, periodic validation.
/// The engine decides where the model data lives; the loop does not care.
/// </summary>
public sealed class Trainer
{
    private readonly TrainingConfig config;
    private readonly ITrainingEngine engine;
    private readonly TokenDataset data;
    private readonly double flopsPerStep;
    private readonly LearningRateSchedule schedule;
    private readonly SplitMix64 batchRng;
    private readonly ICommunicator? comm;
    private readonly int? failAtStep;

    /// <param name="flopsPerStep">Model FLOPs of one optimizer step (all micro-batches), for the TFLOPS figure.</param>
    /// <param name="communicator">The data-parallel job: each rank trains on its slice of every global batch.</param>
    public Trainer(TrainingConfig config, ITrainingEngine engine, TokenDataset data, double flopsPerStep, ICommunicator? communicator = null)
    {
        this.config = config;
        this.engine = engine;
        this.data = data;
        this.flopsPerStep = flopsPerStep;
        comm = communicator is { Size: > 1 } ? communicator : null;
        schedule = LearningRateSchedule.From(config);
        batchRng = new SplitMix64(config.Seed);
        data.EnsureFits(config.SequenceLength);
        failAtStep = FailureInjection.StepFor(comm?.Rank ?? 0);
    }

    /// <summary>Sequences per optimizer step over all ranks.</summary>
    public long TokensPerStep => config.TokensPerStep * (comm?.Size ?? 1);

    /// <summary>Called after every step (and its validation, when one ran).</summary>
    public event Action<StepMetrics>? StepCompleted;

    /// <summary>Optimizer steps completed so far (a resumed trainer starts from the checkpoint's).</summary>
    public int StepsDone { get; private set; }

    public TrainerPosition Position => new(StepsDone, batchRng.State);

    /// <summary>Continues from a saved position: the next step is <c>StepsDone + 1</c>, with the same batches and learning rate.</summary>
    public void Restore(TrainerPosition position)
    {
        if (position.StepsDone < 0) throw new ArgumentOutOfRangeException(nameof(position), position.StepsDone, "steps done cannot be negative");
        StepsDone = position.StepsDone;
        batchRng.State = position.BatchRngState;
    }

    public TrainingSummary Run(CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var stepTimes = new List<double>();
        double firstLoss = double.NaN, lastLoss = double.NaN;
        double? firstVal = null, lastVal = null;
        int done = StepsDone;
        int firstStep = StepsDone + 1;
        long peakRss = 0;
        MemorySnapshot? lastMemory = null;

        bool stopped = false;
        for (int step = firstStep; step <= config.Steps && !(stopped = StopAgreed(cancel)); step++)
        {
            double lr = schedule.At(step - 1);
            if (step == failAtStep) FailureInjection.Fail(comm?.Rank ?? 0, step);
            var stepClock = Stopwatch.StartNew();
            double loss = TrainStep();
            StepOutcome outcome;
            using (StepPhases.Begin(StepPhase.Optimizer)) outcome = engine.Step(lr);
            double seconds = stepClock.Elapsed.TotalSeconds;
            var phases = StepPhases.Enabled ? StepPhases.Take() : null;

            if (!double.IsFinite(loss))
                throw new TrainingDivergedException($"the training loss became {loss} at step {step} (learning rate {lr:g3}). " +
                                                    "Lower optimizer.params.lr, enable gradient_clipping, or use fp32.");
            if (step == firstStep) firstLoss = loss;
            lastLoss = loss;
            done = step;
            StepsDone = step;
            stepTimes.Add(seconds);

            double? val = null;
            // Validate at the first step (the baseline), every interval, and at the end; interval 0 never validates.
            bool due = config.Eval.Interval > 0 && (step == 1 || step % config.Eval.Interval == 0 || step == config.Steps);
            if (due)
            {
                val = Evaluate();
                if (StepPhases.Enabled) StepPhases.Take(); // validation is no part of a step's phases
                firstVal ??= val;
                lastVal = val;
            }

            var memory = MemoryMeter.Snapshot();
            peakRss = Math.Max(peakRss, memory.PeakResident);
            lastMemory = memory;
            double mean = stepTimes.Count > 1 ? stepTimes.Skip(1).Average() : seconds; // the first step includes warm-up
            var remaining = TimeSpan.FromSeconds(mean * (config.Steps - step));
            StepCompleted?.Invoke(new StepMetrics(step, config.Steps, loss, val, lr, outcome.GradNorm, outcome.Skipped, seconds,
                TokensPerStep / seconds, flopsPerStep / seconds / 1e12, clock.Elapsed, remaining, memory,
                engine.Statistics, phases));
        }

        var steady = stepTimes.Count > 2 ? stepTimes.Skip(1).ToList() : stepTimes;
        double median = PatrickStar.Benchmarks.Measure.Median(steady);
        return new TrainingSummary(done, firstLoss, lastLoss, firstVal, lastVal, median,
            median > 0 ? TokensPerStep / median : 0, median > 0 ? flopsPerStep / median / 1e12 : 0,
            clock.Elapsed, peakRss, stopped && done < config.Steps, lastMemory);
    }

    /// <summary>
    /// Whether to stop before the next step. In a data-parallel job every rank stops at the same step: a signal reaches the
    /// ranks at different moments, and a rank that stopped alone (to save) would leave the others waiting in the next step's
    /// collectives for ever. One scalar all-reduce per step.
    /// </summary>
    private bool StopAgreed(CancellationToken cancel)
    {
        bool here = cancel.IsCancellationRequested;
        return comm is null ? here : comm.AllReduce(here ? 1.0 : 0.0, ReduceOp.Max) > 0;
    }

    /// <summary>Forward and backward over every micro-batch of one step; returns the step's mean loss (over all ranks).</summary>
    private double TrainStep()
    {
        double total = 0;
        int accumulation = config.GradientAccumulationSteps;
        for (int micro = 0; micro < accumulation; micro++)
        {
            using var scope = NewDisposeScope();
            var (input, target) = comm is null
                ? data.Batch(Split.Train, config.MicroBatchSize, config.SequenceLength, batchRng, engine.Device)
                : ShardOfGlobalBatch();
            Tensor loss;
            using (StepPhases.Begin(StepPhase.ForwardOther))
            {
                loss = LanguageModelLoss.Of(engine.Model, input, target);
                total += loss.item<float>();
            }
            using (StepPhases.Begin(StepPhase.Backward)) engine.Backward(accumulation == 1 ? loss : loss / accumulation);
        }
        // Every rank's micro-batches are the same size, so the mean of the ranks' means is the global mean.
        return comm is null ? total / accumulation : comm.AllReduce(total / accumulation, ReduceOp.Average);
    }

    /// <summary>
    /// Every rank draws the same global micro-batch (ranks × micro-batch sequences, from the same seed) and keeps
    /// rows [rank × b, (rank + 1) × b): N ranks see exactly the sequences one rank with micro-batch N × b would.
    /// </summary>
    private (Tensor Input, Tensor Target) ShardOfGlobalBatch()
    {
        int b = config.MicroBatchSize;
        var (input, target) = data.Batch(Split.Train, b * comm!.Size, config.SequenceLength, batchRng, engine.Device);
        return (input.narrow(0, (long)comm.Rank * b, b), target.narrow(0, (long)comm.Rank * b, b));
    }

    /// <summary>Mean loss over a fixed set of validation windows (the same ones every time, so values compare).</summary>
    public double Evaluate()
    {
        var rng = new SplitMix64(config.Seed ^ 0x5EED_7A11);
        var model = engine.Model;
        model.eval();
        try
        {
            using var _ = no_grad();
            double total = 0;
            for (int i = 0; i < config.Eval.Batches; i++)
            {
                using var scope = NewDisposeScope();
                var (input, target) = data.Batch(Split.Validation, config.MicroBatchSize, config.SequenceLength, rng, engine.Device);
                total += LanguageModelLoss.Of(model, input, target).item<float>();
            }
            return total / config.Eval.Batches;
        }
        finally
        {
            model.train();
        }
    }
}

public static class LanguageModelLoss
{
    /// <summary>The mean next-token loss of <paramref name="model"/> on <paramref name="input"/>: without logits when the
    /// model computes it itself (<see cref="ILanguageModelLoss"/>), else from its logits.</summary>
    public static Tensor Of(nn.Module<Tensor, Tensor> model, Tensor input, Tensor targets) =>
        model is ILanguageModelLoss lm ? lm.Loss(input, targets) : CrossEntropy(model.call(input), targets);

    /// <summary>Mean next-token cross-entropy, computed in fp32 whatever the logits' precision (<see cref="FusedCrossEntropy"/>:
    /// when the logits require a gradient, they are overwritten with it).</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets)
    {
        using var scope = NewDisposeScope();
        long vocab = logits.shape[^1];
        return FusedCrossEntropy.Mean(logits.reshape(-1, vocab), targets.reshape(-1)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// For tests of failure handling in data-parallel jobs: PSTAR_FAIL_RANK=R and PSTAR_FAIL_STEP=S make rank R
/// throw at the start of step S (PSTAR_FAIL_MODE=kill: die by SIGKILL instead). Read only by the trainer; unset, nothing happens.
/// </summary>
public static class FailureInjection
{
    public static int? StepFor(int rank) =>
        int.TryParse(Environment.GetEnvironmentVariable("PSTAR_FAIL_RANK"), out int r) && r == rank
        && int.TryParse(Environment.GetEnvironmentVariable("PSTAR_FAIL_STEP"), out int s) ? s : null;

    public static void Fail(int rank, int step)
    {
        // PSTAR_FAIL_MODE=kill: the process dies at once (SIGKILL), with no exception, no clean-up and no MPI_Abort,
        // as when the machine or the out-of-memory killer takes a rank.
        if (Environment.GetEnvironmentVariable("PSTAR_FAIL_MODE") == "kill")
        {
            Console.Out.Flush();
            kill(Environment.ProcessId, 9);
        }
        throw new InvalidOperationException($"rank {rank} failed on purpose at step {step} (PSTAR_FAIL_RANK={rank}, PSTAR_FAIL_STEP={step}).");
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int kill(int pid, int signal);
}
