using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// Shows a run's progress: a live panel on a terminal, plain log lines otherwise (CI, pipes, files),
/// and a final summary either way.
/// </summary>
public sealed class TrainingDisplay
{
    private readonly bool live;

    private TrainingDisplay(bool live) { this.live = live; }

    public static TrainingDisplay Create(bool plainOutput) =>
        new(!plainOutput && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive);

    /// <summary>A message line; in plain output written as is, so that a log or pipe never gets it wrapped at 80 columns.</summary>
    public void Announce(string text)
    {
        if (live) AnsiConsole.MarkupLine($"[grey]{CommandErrors.Esc(text)}[/]");
        else Console.WriteLine(text);
    }

    public TrainingSummary Run(GptRun run, CancellationToken cancel)
    {
        var c = run.Config;
        var m = run.ModelConfig;
        AnsiConsole.MarkupLine(
            $"[bold]Training[/] {CommandErrors.Esc(c.Model.Preset ?? "custom GPT")}: {m.ParameterCount:N0} parameters " +
            $"({m.Layers} layers, hidden {m.Hidden}, {m.Heads} heads, context {m.ContextLength}) on {run.Device}, " +
            $"{PrecisionNames.Name(c.Precision)}, {run.Engine.Name} engine");
        AnsiConsole.MarkupLine(
            $"Data: {CommandErrors.Esc(run.Data.Description)}: {run.Data.TrainTokens:N0} training / {run.Data.ValidationTokens:N0} validation tokens. " +
            $"Batch {c.MicroBatchSize} x {c.GradientAccumulationSteps} accumulation x {c.SequenceLength} tokens = {c.TokensPerStep:N0} tokens/step, {c.Steps} steps.");

        if (!live)
        {
            int every = Math.Max(1, c.Steps / 30);
            run.Trainer.StepCompleted += s =>
            {
                if (s.Step == 1 || s.Step % every == 0 || s.ValidationLoss is not null || s.Step == s.TotalSteps)
                {
                    Console.WriteLine(Line(s));
                    if (s.EngineStatistics.Chunks is { } chunks) Console.WriteLine("           " + ChunkLine(chunks));
                }
            };
            return run.Trainer.Run(cancel);
        }

        var history = new List<string>();
        TrainingSummary? summary = null;
        AnsiConsole.Live(new Markup("starting...")).AutoClear(false).Start(ctx =>
        {
            run.Trainer.StepCompleted += s =>
            {
                if (s.ValidationLoss is not null || s.Step == 1) history.Add(HistoryLine(s));
                if (history.Count > 8) history.RemoveAt(0);
                ctx.UpdateTarget(Panel(s, history));
            };
            summary = run.Trainer.Run(cancel);
        });
        return summary!;
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
               $"peak device {Bytes.Format(i.PeakDeviceBytes)} = {Bytes.Format(i.PeakDeviceModelBytes)} chunks + {Bytes.Format(i.PeakDeviceNonModelBytes)} non-model";
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
        grid.AddRow("[bold]time[/]", $"elapsed {Clock(s.Elapsed)}   eta {Clock(s.Remaining)}");
        var rows = new Rows(grid, new Text(""), new Markup("[grey]" + CommandErrors.Esc(string.Join("\n", history)) + "[/]"));
        return new Panel(rows).Header("pstar train").Border(BoxBorder.Rounded);
    }

    public void Summarize(GptRun run, TrainingSummary s, string? metricsPath)
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
        if (metricsPath is not null) table.AddRow("metrics", CommandErrors.Esc(metricsPath));
        AnsiConsole.Write(table);
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
