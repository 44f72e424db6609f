using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// Shows a run's progress: a live panel on a terminal, plain log lines otherwise (CI, pipes, files),
/// and a final summary either way.
/// </summary>
public sealed class TrainingDisplay
{
    private readonly bool live;
    // While the live panel is up, messages wait here and are printed above it by the thread that owns the panel:
    // written straight to the console they would land inside the panel's border.
    private readonly Queue<string> pending = new();
    private readonly object gate = new();
    private LiveDisplayContext? liveContext;
    private IRenderable? lastPanel;

    // Held rather than read from AnsiConsole.Console each time: tests give a display its own console without
    // replacing the process-wide one under tests that run at the same time.
    private readonly IAnsiConsole console;

    private TrainingDisplay(bool live, IAnsiConsole? console = null)
    {
        this.live = live;
        this.console = console ?? AnsiConsole.Console;
    }

    public static TrainingDisplay Create(bool plainOutput) =>
        new(!plainOutput && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive);

    /// <summary>The live panel whatever the console: for a console known to be interactive (and for tests).</summary>
    public static TrainingDisplay AlwaysLive(IAnsiConsole? console = null) => new(true, console);

    public void Announce(string text) => Announce(text, error: false);

    /// <summary>
    /// A message line (to standard error when <paramref name="error"/>); in plain output written as is, so that a log or
    /// pipe never gets it wrapped at 80 columns. While the live panel is shown (from any thread: a signal handler, too),
    /// it appears at once as the panel's last line and is printed above the panel when the step ends.
    /// </summary>
    public void Announce(string text, bool error)
    {
        lock (gate)
        {
            if (liveContext is not null)
            {
                pending.Enqueue(text);
                if (lastPanel is not null) liveContext.UpdateTarget(WithPending(lastPanel));
                return;
            }
        }
        if (live) console.MarkupLine($"[grey]{CommandErrors.Esc(text)}[/]");
        else (error ? Console.Error : Console.Out).WriteLine(text);
    }

    /// <summary>On the panel's thread: prints the waiting messages above the panel (Spectre's live display moves it down).</summary>
    private void FlushPending()
    {
        while (pending.TryDequeue(out var text)) console.MarkupLine($"[grey]{CommandErrors.Esc(text)}[/]");
    }

    private IRenderable WithPending(IRenderable panel) =>
        pending.Count == 0 ? panel : new Rows(panel, new Markup("[yellow]" + CommandErrors.Esc(string.Join("\n", pending)) + "[/]"));

    public TrainingSummary Run(GptRun run, CancellationToken cancel)
    {
        var c = run.Config;
        var m = run.ModelConfig;
        console.MarkupLine(
            $"[bold]Training[/] {CommandErrors.Esc(c.Model.Preset ?? "custom GPT")}: {run.Choice.ParameterCount:N0} parameters " +
            $"({m.Layers} layers, hidden {m.Hidden}, {m.Heads} heads, context {m.ContextLength}) on {run.Device}, " +
            $"{PrecisionNames.Name(c.Precision)}, {run.Engine.Name} engine");
        console.MarkupLine(
            $"Data: {CommandErrors.Esc(run.Data.Description)}: {run.Data.TrainTokens:N0} training / {run.Data.ValidationTokens:N0} validation tokens. " +
            BatchLine(c, run.Ranks));

        if (!live)
        {
            int every = c.StepsPerPrint ?? Math.Max(1, c.Steps / 30);
            run.Trainer.StepCompleted += s =>
            {
                if (s.Step == 1 || s.Step % every == 0 || s.ValidationLoss is not null || s.Step == s.TotalSteps)
                {
                    Console.WriteLine(Line(s));
                    if (s.EngineStatistics.Chunks is { } chunks) Console.WriteLine("           " + ChunkLine(chunks));
                    if (s.EngineStatistics.Disk is { } disk) Console.WriteLine("           " + disk);
                }
            };
            return run.Trainer.Run(cancel);
        }

        var history = new List<string>();
        TrainingSummary? summary = null;
        var starting = new Markup("starting...");
        // Visible, not cropped: under TERM=dumb (as CI sets it) Spectre's cropping of a panel taller than the console's
        // height threw from its renderer (List.RemoveRange out of bounds); a short terminal scrolls instead.
        console.Live(starting).AutoClear(false).Overflow(VerticalOverflow.Visible).Start(ctx =>
        {
            lock (gate)
            {
                liveContext = ctx;
                lastPanel = starting; // a message before the first step ends shows below it
            }
            run.Trainer.StepCompleted += s =>
            {
                if (s.ValidationLoss is not null || s.Step == 1) history.Add(HistoryLine(s));
                if (history.Count > 8) history.RemoveAt(0);
                lock (gate)
                {
                    FlushPending();
                    lastPanel = Panel(s, history);
                    ctx.UpdateTarget(lastPanel);
                }
            };
            try
            {
                summary = run.Trainer.Run(cancel);
            }
            finally
            {
                lock (gate)
                {
                    FlushPending();
                    if (lastPanel is not null) ctx.UpdateTarget(lastPanel);
                    liveContext = null;
                }
            }
        });
        return summary!;
    }

    /// <summary>
    /// The batch of one optimizer step over the whole job: under `pstar launch` each of N ranks trains on its own
    /// micro-batches, so the global batch and the tokens per step are N times one rank's.
    /// </summary>
    public static string BatchLine(TrainingConfig c, int ranks)
    {
        string perRank = $"{c.MicroBatchSize} x {c.GradientAccumulationSteps} accumulation";
        string batch = ranks > 1
            ? $"Global batch {(long)c.MicroBatchSize * c.GradientAccumulationSteps * ranks:N0} sequences ({perRank} x {ranks} ranks)"
            : $"Batch {perRank}";
        return $"{batch} x {c.SequenceLength} tokens = {c.TokensPerStep * ranks:N0} tokens/step, {c.Steps} steps.";
    }

    private static string Line(StepMetrics s) =>
        $"step {s.Step,5}/{s.TotalSteps}  loss {s.Loss:0.0000}" +
        (s.ValidationLoss is double v ? $"  val {v:0.0000}" : "") +
        $"  lr {s.LearningRate:0.00e+0}  {s.TokensPerSecond,8:N0} tok/s  {s.Tflops:0.000} TFLOPS  " +
        $"mem {Bytes.Format(s.Memory.NativeInUse)} allocated, {Bytes.Format(s.Memory.Resident)} resident  elapsed {Clock(s.Elapsed)}  eta {Clock(s.Remaining)}";

    private static string HistoryLine(StepMetrics s) =>
        $"step {s.Step,5}/{s.TotalSteps}  loss {s.Loss:0.0000}" + (s.ValidationLoss is double v ? $"  val {v:0.0000}" : "") +
        $"  lr {s.LearningRate:0.00e+0}  at {Clock(s.Elapsed)}";

    private static string ChunkLine(ChunkStatistics c)
    {
        var i = c.LastIteration ?? new ChunkIterationStatistics(0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        return $"{c.Chunks:N0} x {c.ChunkElements:N0} elements ({c.ChunkUtilisation:P1} used), {i.DeviceChunksResident:N0} on device   " +
               $"moved {Bytes.Format(i.BytesToDevice)} to device, {Bytes.Format(i.BytesToHost)} to host ({i.ChunkMoves:N0} moves, {i.Evictions:N0} evictions)   " +
               $"peak device {Bytes.Format(i.PeakDeviceBytes)} = {Bytes.Format(i.PeakDeviceModelBytes)} chunks + {Bytes.Format(i.PeakDeviceNonModelBytes)} non-model" +
               (i.OptimizerGradientBytesToHost > 0 ? $"   optimizer gradients to host {Bytes.Format(i.OptimizerGradientBytesToHost)}" : "");
    }

    private static Panel Panel(StepMetrics s, List<string> history)
    {
        double fraction = (double)s.Step / s.TotalSteps;
        int width = 40;
        int filled = (int)Math.Round(fraction * width);
        var grid = new Grid().AddColumn().AddColumn();
        grid.AddRow("[bold]progress[/]", $"[green]{new string('#', filled)}[/][grey]{new string('-', width - filled)}[/] {s.Step}/{s.TotalSteps} ({fraction:P0})");
        grid.AddRow("[bold]loss[/]", $"{s.Loss:0.0000}" + (s.ValidationLoss is double v ? $"   validation {v:0.0000}" : ""));
        grid.AddRow("[bold]learning rate[/]", $"{s.LearningRate:0.000e+0}   grad norm {s.GradNorm:0.000}");
        grid.AddRow("[bold]throughput[/]", $"{s.TokensPerSecond:N0} tokens/s   {s.Tflops:0.000} TFLOPS   {s.StepSeconds * 1000:N0} ms/step");
        grid.AddRow("[bold]memory[/]", $"{Bytes.Format(s.Memory.NativeInUse)} allocated   {Bytes.Format(s.Memory.Resident)} resident   peak {Bytes.Format(s.Memory.PeakResident)}");
        if (s.EngineStatistics.Chunks is { } chunks) grid.AddRow("[bold]chunks[/]", ChunkLine(chunks));
        if (s.EngineStatistics.Disk is { } disk) grid.AddRow("[bold]disk[/]", CommandErrors.Esc(disk.ToString()));
        grid.AddRow("[bold]time[/]", $"elapsed {Clock(s.Elapsed)}   eta {Clock(s.Remaining)}");
        var rows = new Rows(grid, new Text(""), new Markup("[grey]" + CommandErrors.Esc(string.Join("\n", history)) + "[/]"));
        return new Panel(rows).Header("pstar train").Border(BoxBorder.Rounded);
    }

    public void Summarize(GptRun run, TrainingSummary s, string? metricsPath, string? tensorBoardDir = null)
    {
        var table = new Table().Border(TableBorder.Rounded).Title(s.Cancelled ? "Stopped early" : "Done").HideHeaders();
        table.AddColumn("");
        table.AddColumn("");
        table.AddRow("steps", $"{s.StepsDone} of {run.Config.Steps}");
        bool stepped = !double.IsNaN(s.FirstLoss); // a run stopped before its first step has no loss or timing
        table.AddRow("training loss", stepped ? $"{s.FirstLoss:0.0000} -> {s.LastLoss:0.0000}" : "none: no step completed");
        if (s.FirstValidationLoss is double v0 && s.LastValidationLoss is double v1)
            table.AddRow("validation loss", $"{v0:0.0000} -> {v1:0.0000}");
        if (stepped)
        {
            table.AddRow("median step", $"{s.MedianStepSeconds * 1000:N0} ms");
            table.AddRow("median throughput", $"{s.MedianTokensPerSecond:N0} tokens/s, {s.MedianTflops:0.000} TFLOPS");
        }
        table.AddRow("peak resident memory", PeakMemoryLine(s));
        table.AddRow("elapsed", Clock(s.Elapsed));
        if (run.Engine.Statistics.Chunks is { } chunks) table.AddRow("chunks (last step)", CommandErrors.Esc(ChunkLine(chunks)));
        if (run.Engine.Statistics.Disk is { } disk) table.AddRow("disk (last step)", CommandErrors.Esc(disk.ToString()));
        if (run.Engine.Statistics.Chunks?.LastIteration?.Communication is { } comm) table.AddRow("collectives (last step)", CommandErrors.Esc(comm.ToString()));
        if (metricsPath is not null) table.AddRow("metrics", CommandErrors.Esc(metricsPath));
        if (tensorBoardDir is not null) table.AddRow("tensorboard", CommandErrors.Esc($"{tensorBoardDir} (tensorboard --logdir {tensorBoardDir})"));
        console.Write(table);
    }

    /// <summary>
    /// Resident memory is what the machine gives the process; the allocator's figure is what libtorch holds in tensors.
    /// Shown together, with the runtime's own share, so that neither is mistaken for the other.
    /// </summary>
    private static string PeakMemoryLine(TrainingSummary s)
    {
        string line = Bytes.Format(s.PeakResidentBytes);
        if (s.FinalMemory is MemorySnapshot m)
            line += $" (at the end: {Bytes.Format(m.Resident)} resident, {Bytes.Format(m.NativeInUse)} allocated";
        if (MemoryMeter.RuntimeBaselineResident is long baseline)
            line += (s.FinalMemory is null ? " (" : "; ") + $"runtime alone {Bytes.Format(baseline)}";
        return s.FinalMemory is null && MemoryMeter.RuntimeBaselineResident is null ? line : line + ")";
    }

    private static string Clock(TimeSpan t) => t.TotalHours >= 1 ? t.ToString(@"h\:mm\:ss") : t.ToString(@"m\:ss");
}
