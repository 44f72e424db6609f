using System.CommandLine;
using System.Runtime.InteropServices;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using PatrickStar.Training.Logging;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar train`: a GPT on the built-in corpus by default; every setting from a config file and/or flags.</summary>
public static class TrainCommand
{
    public static Command Build()
    {
        var config = new Option<FileInfo?>("--config") { Description = "JSON config file (DeepSpeed-style keys; see README). Flags override it." };
        var metrics = new Option<FileInfo?>("--metrics") { Description = "Write every step's metrics to this file: CSV when it ends in .csv, else one JSON object per line (JSON Lines)." };
        var tensorBoard = new Option<string?>("--tensorboard") { Description = "Write TensorBoard event files into this folder (loss, validation loss, lr, grad norm, tokens/s, memory, chunk traffic); view with `tensorboard --logdir DIR`." };
        var quiet = new Option<bool>("--plain-output") { Description = "Print plain log lines instead of the live display." };
        var resume = new Option<string?>("--resume")
        {
            Description = "Continue from a checkpoint directory, or the latest checkpoint under a save directory (default: --save-dir).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var profile = new Option<FileInfo?>("--profile") { Description = "Chunked engine: record memory per moment, chunk events and phase times to this JSON file (see `pstar plot`)." };
        var initFrom = new Option<FileInfo?>("--init-from") { Description = "Start from the weights of a Hugging Face GPT-2 or LLaMA folder (config.json, model.safetensors or shards, its tokenizer), or of a safetensors file (config.json beside it gives the sizes, else --layers/--hidden/--heads/--context and the file's vocabulary); not with --model." };

        var command = new Command("train",
            "Train a GPT language model. Progress shows loss, tokens/s, achieved TFLOPS and memory. TFLOPS counts model FLOPs: " +
            GptConfig.FlopsFormula + ", divided by the step's wall time." + Examples.Format(
                "pstar train --model gpt2-tiny --steps 50                # a tiny model, quickly",
                "pstar train --data books/ --seq 256 --batch 4 --accum 4  # your data files, 16 sequences per step",
                "pstar train --engine chunked --device-memory 1300MiB     # the chunk engine under a device budget",
                "pstar train --config ds_config.json --set steps=500      # a DeepSpeed config, one key overridden",
                "pstar train --metrics m.csv --tensorboard runs/tb        # per-step CSV and TensorBoard event files",
                "pstar train --save-dir runs/a --save-every 100           # checkpoints; run again to resume"));
        command.Options.Add(config);
        var flags = ConfigFlags.AddTo(command, ConfigFlags.ForTrain);
        foreach (var o in new Option[] { metrics, tensorBoard, quiet, resume, initFrom, profile })
            command.Options.Add(o);

        command.SetAction(r => CommandErrors.Run(() =>
        {
            var cfgFile = r.GetValue(config);
            var warnings = new List<string>();
            var c = cfgFile is null ? new TrainingConfig() : ConfigLoader.Load(cfgFile.FullName, warnings);
            string source = cfgFile is null ? "command line" : $"{cfgFile.Name} with command-line flags";

            var given = flags.Apply(r, c, warnings);
            foreach (string warning in warnings) Console.Error.WriteLine($"warning: {warning}");
            string? resumeFrom = null;
            if (r.GetResult(resume) is not null)
                resumeFrom = r.GetValue(resume) ?? c.Checkpoint.SaveDir
                    ?? throw new ConfigException("--resume needs a checkpoint directory, or --save-dir to take the latest checkpoint from.");
            string? init = r.GetValue(initFrom)?.FullName;
            GptRun.EnsureOneStartingPoint(resumeFrom, init);
            if (init is not null)
            {
                string? presetSource = given.Any(o => o.Key == "model.preset") ? "--model"
                    : cfgFile is not null && c.Model.Preset != new TrainingConfig().Model.Preset ? $"model.preset in {cfgFile.Name}" : null;
                InitFromSizes.Apply(c, init, presetSource);
            }
            string? profilePath = r.GetValue(profile)?.FullName;
            if (profilePath is not null && c.Engine != "chunked")
                throw new ConfigException("--profile records the chunk engine's moments and chunk events: add --engine chunked.");
            ConfigLoader.Validate(c, source, ranks: Communicators.LauncherSize() ?? 1);
            string? metricsPath = r.GetValue(metrics)?.FullName;
            // Before any work: a run must not fail at its end (or after its first step) for an output it cannot write.
            string? tensorBoardDir = r.GetValue(tensorBoard) is string tb ? Path.GetFullPath(tb) : null;
            MetricsSinks.EnsureWritable(metricsPath, tensorBoardDir);
            if (profilePath is not null) OutputPaths.EnsureWritableFile(profilePath, "--profile file", viaTempFile: true);

            return TrainOnEveryRank(c, new MetricsOutputs(metricsPath, tensorBoardDir), plainOutput: r.GetValue(quiet), init, resumeFrom, profilePath);
        }));
        return command;
    }

    private static ProfileRecorder AttachProfiler(GptRun run)
    {
        var recorder = new ProfileRecorder();
        var m = run.ModelConfig;
        ((PatrickStar.Engine.ChunkedEngine)run.Engine).AttachProfiler(recorder,
            $"{(run.Choice.IsLlama ? "LLaMA" : "GPT")} {m.Layers} layers, hidden {m.Hidden}, {m.Heads} heads, vocab {m.VocabSize}, {run.Choice.ParameterCount:N0} parameters; " +
            $"batch {run.Config.MicroBatchSize} x seq {run.Config.SequenceLength}, {PrecisionNames.Name(run.Config.Precision)}");
        run.Trainer.StepCompleted += s => recorder.Step(s.Step, s.Loss, s.ValidationLoss, s.StepSeconds * 1000, run.Config.TokensPerStep);
        return recorder;
    }

    /// <summary>A repeat of a stop signal sooner than this after the first is taken for the same signal delivered twice.</summary>
    public const int DuplicateSignalWindowMs = 1000;

    /// <summary>Where a run stopped by a signal saves when no save directory was given.</summary>
    public const string DefaultSignalSaveDir = "checkpoints";

    /// <summary>
    /// Alone, or as one rank of the MPI job mpirun started. In a job every line a rank prints starts with `[rank R]`,
    /// and a rank that fails reports why and aborts the job, so that the others stop instead of waiting for it.
    /// </summary>
    private static int TrainOnEveryRank(TrainingConfig config, MetricsOutputs outputs, bool plainOutput, string? initFrom, string? resumeFrom, string? profilePath)
    {
        using var comm = Communicators.LauncherSize() is null ? null : Communicators.Create();
        if (comm is not { Size: > 1 }) return Train(config, outputs, plainOutput, initFrom, resumeFrom, profilePath, comm);
        Console.SetOut(new RankPrefixWriter(Console.Out, comm.Rank));
        Console.SetError(new RankPrefixWriter(Console.Error, comm.Rank));
        try
        {
            return Train(config, outputs, plainOutput, initFrom, resumeFrom, profilePath, comm);
        }
        catch (Exception e) when (e is not CommunicatorAbortedException)
        {
            // One line naming the rank and the cause in the job's merged output; a bug's full report goes to a crash log.
            var (line, _) = CommandErrors.Describe(e);
            string cause = line[(line.IndexOf(": ", StringComparison.Ordinal) + 2)..];
            Console.Error.WriteLine($"error: rank {comm.Rank} of {comm.Size} failed: {cause}");
            Console.Error.Flush();
            comm.Abort(CommandErrors.UserError, $"rank {comm.Rank} failed: {cause}"); // MPI_Abort: ends every rank
            return CommandErrors.UserError;
        }
    }

    private static int Train(TrainingConfig config, MetricsOutputs outputs, bool plainOutput, string? initFrom, string? resumeFrom, string? profilePath, ICommunicator? comm)
    {
        bool leader = comm is null || comm.Rank == 0;
        // SIGINT (Ctrl-C) or SIGTERM (a preemptible cluster): finish the step, save, exit cleanly. A second signal exits at once.
        using var cancel = new CancellationTokenSource();
        var display = TrainingDisplay.Create(plainOutput || comm is not null);
        int signals = 0;
        long firstSignalAt = 0;
        void OnSignal(PosixSignalContext context)
        {
            // One signal to a process group reaches pstar twice when a parent forwards it too (`dotnet run`, `timeout`,
            // a batch system signalling every process of the job): a repeat within a second is that echo, not a
            // user's second request, and must not throw the run's checkpoint away.
            long now = Environment.TickCount64;
            if (Interlocked.CompareExchange(ref firstSignalAt, now, 0) != 0 && now - Interlocked.Read(ref firstSignalAt) < DuplicateSignalWindowMs)
            {
                context.Cancel = true;
                return;
            }
            if (Interlocked.Increment(ref signals) > 1)
            {
                Console.Error.WriteLine($"{context.Signal} again: exiting now without saving.");
                PatrickStar.Runtime.ImmediateExit.Now(128 + (context.Signal == PosixSignal.SIGTERM ? 15 : 2));
            }
            context.Cancel = true;
            cancel.Cancel();
            display.Announce($"{context.Signal}: finishing the current step, then saving a checkpoint (send it again to exit at once)...", error: true);
        }
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

        var (saveDirLock, startFrom) = TakeSaveDir(config, resumeFrom, display, comm);
        using var _ = saveDirLock;
        if (startFrom is not null && resumeFrom is null && initFrom is not null)
        {
            display.Announce($"--init-from {initFrom} is not used: the run continues from its checkpoint.");
            initFrom = null;
        }
        display.Announce("Preparing: tokenizing data and building the model...");
        using var run = GptRun.Create(config, initFrom: initFrom, resumeFrom: startFrom, communicator: comm);
        if (run.ResumedFrom is not null)
            display.Announce($"Resumed from {run.ResumedFrom} at step {run.Trainer.StepsDone}.");
        if (comm is not null)
            display.Announce($"Data parallel: rank {comm.Rank} of {comm.Size} ({comm.Backend}), {config.Distributed.Mode.ToString().ToLowerInvariant()} mode; " +
                             $"holds {Profiling.Bytes.Format(((PatrickStar.Engine.ChunkedEngine)run.Engine).ModelDataBytesHeld)} of chunks.");
        // Only rank 0 shows progress and writes metrics; the others train quietly and report only errors.
        var sinks = leader ? MetricsSinks.Open(outputs.File, outputs.TensorBoardDir) : new List<IMetricsSink>();
        using var closeSinks = new DisposeAll(sinks);
        foreach (var sink in sinks) run.Trainer.StepCompleted += sink.Write;
        run.SaveCheckpointsPeriodically(path => { if (leader) display.Announce($"Checkpoint saved: {path}"); });
        // Each rank may record its own profile (its chunks and its memory): rank R writes FILE with ".rankR" before the extension.
        if (profilePath is not null && comm is not null)
            profilePath = Path.ChangeExtension(profilePath, $".rank{comm.Rank}{Path.GetExtension(profilePath)}");
        var recorder = profilePath is null ? null : AttachProfiler(run);
        TrainingSummary summary;
        try
        {
            summary = leader ? display.Run(run, cancel.Token) : run.Trainer.Run(cancel.Token);
        }
        finally
        {
            // A run that fails still leaves its profile: the moments before the failure are what explains it.
            if (recorder is not null)
            {
                recorder.Save(profilePath!);
                Console.WriteLine($"Profile written to {profilePath} ({recorder.ToProfile().Moments.Count} moments); draw it with: pstar plot {profilePath}");
            }
        }
        if (leader) display.Summarize(run, summary, outputs.File, outputs.TensorBoardDir);

        // summary.Cancelled, not this rank's token: a rank may stop with the others before its own signal arrived.
        SaveAtEnd(run, interrupted: summary.Cancelled || cancel.IsCancellationRequested, leader);
        return 0;
    }

    /// <summary>
    /// Before any data or model work: the save directory is locked (which also proves it writable) and where the run
    /// starts is decided (<see cref="ResumePlanner"/>). Rank 0 decides first; the other ranks after it, quietly.
    /// </summary>
    private static (SaveDirLock? Lock, string? StartFrom) TakeSaveDir(TrainingConfig config, string? resumeFrom, TrainingDisplay display, ICommunicator? comm)
    {
        if (comm is { Rank: > 0 })
        {
            comm.Barrier();
            return (null, ResumePlanner.Decide(config, resumeFrom, leader: false, _ => { }));
        }
        SaveDirLock? dirLock = null;
        try
        {
            // An explicit --resume without --save-dir saves beside its checkpoint: that folder is known once decided.
            if (config.Checkpoint.SaveDir is not null) dirLock = SaveDirLock.Acquire(config.Checkpoint.SaveDir, display.Announce);
            string? startFrom = ResumePlanner.Decide(config, resumeFrom, leader: true, display.Announce);
            if (dirLock is null && config.Checkpoint.SaveDir is not null) dirLock = SaveDirLock.Acquire(config.Checkpoint.SaveDir, display.Announce);
            comm?.Barrier();
            return (dirLock, startFrom);
        }
        catch
        {
            dirLock?.Dispose();
            throw;
        }
    }

    /// <summary>The save at the end of a run (or on a signal); nothing when no step completed since the start or the resume.</summary>
    private static void SaveAtEnd(GptRun run, bool interrupted, bool leader)
    {
        var config = run.Config;
        if (config.Checkpoint.SaveDir is null && !interrupted) return;
        if (!run.HasUnsavedSteps)
        {
            if (leader)
                Console.WriteLine(run.ResumedFrom is null
                    ? "Stopped before the first step completed: nothing to save."
                    : $"No step completed since resuming: {Path.GetFullPath(run.ResumedFrom)} already holds this state; nothing saved.");
            return;
        }
        // Without --save-dir a signalled run saves under checkpoints/ (or checkpoints-2, ... if that holds another run's).
        string dir = config.Checkpoint.SaveDir ?? SaveDirectory.FirstUnused(DefaultSignalSaveDir);
        string path = run.SaveCheckpoint(dir);
        if (leader)
            Console.WriteLine(interrupted
                ? $"Stopped at step {run.Trainer.StepsDone}; checkpoint saved to {Path.GetFullPath(path)}. Continue with: pstar train --resume {path} (and the same settings)."
                : $"Checkpoint saved to {Path.GetFullPath(path)}.");
    }
}

/// <summary>Starts every line a rank writes with `[rank R] `, so that the merged output of a job says who wrote what.</summary>
internal sealed class RankPrefixWriter(TextWriter inner, int rank) : TextWriter
{
    // Whole lines go out in one write: the ranks share mpirun's output, and a line written piecemeal would be
    // interleaved with another rank's.
    private readonly string prefix = $"[rank {rank}] ";
    private readonly System.Text.StringBuilder line = new();
    private bool continuing; // part of this line was already flushed (with its prefix)

    public override System.Text.Encoding Encoding => inner.Encoding;

    public override void Write(char value)
    {
        lock (line)
        {
            line.Append(value);
            if (value == '\n') Emit();
        }
    }

    public override void Write(string? value)
    {
        if (value is null) return;
        lock (line)
            foreach (char ch in value)
            {
                line.Append(ch);
                if (ch == '\n') Emit();
            }
    }

    private void Emit()
    {
        inner.Write((continuing ? "" : prefix) + line);
        inner.Flush();
        line.Clear();
        continuing = false;
    }

    public override void Flush()
    {
        lock (line)
        {
            if (line.Length > 0)
            {
                inner.Write((continuing ? "" : prefix) + line);
                line.Clear();
                continuing = true;
            }
            inner.Flush();
        }
    }
}

/// <summary>Where rank 0 writes the run's metrics: `--metrics FILE` and `--tensorboard DIR`.</summary>
internal sealed record MetricsOutputs(string? File, string? TensorBoardDir);

/// <summary>Disposes every item, e.g. the metrics sinks, at the end of a using block.</summary>
internal sealed class DisposeAll(IEnumerable<IDisposable> items) : IDisposable
{
    public void Dispose()
    {
        foreach (var item in items) item.Dispose();
    }
}
