using System.Text.Json.Nodes;
using PatrickStar.Benchmarks;
using PatrickStar.Profiling;
using PatrickStar.Timing;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// Where a trainer run's step time goes (<see cref="StepPhases"/>, medians over the measured steps) and its model-FLOPs
/// utilisation against both matmul peaks of the sitting: the trainers part's third table.
/// </summary>
internal static class StepBreakdown
{
    private static readonly (StepPhase Phase, string Label, string Key)[] Columns =
    {
        (StepPhase.ForwardMatmul, "fwd matmul", "forward_matmul"),
        (StepPhase.Attention, "attention", "attention"),
        (StepPhase.ForwardOther, "other fwd", "forward_other"),
        (StepPhase.Backward, "backward", "backward"),
        (StepPhase.Optimizer, "optimizer", "optimizer"),
        (StepPhase.ChunkMovement, "chunk moves", "chunk_movement"),
    };

    /// <summary>Median seconds per phase, and the rest of the step ("everything else"), over the measured steps.</summary>
    public static (Dictionary<string, double> Seconds, double Else)? Medians(List<IReadOnlyDictionary<StepPhase, double>> phases, List<double> steps)
    {
        if (phases.Count == 0 || phases.Count != steps.Count) return null;
        var seconds = Columns.ToDictionary(c => c.Key, c => Measure.Median(phases.Select(p => p[c.Phase]).ToList()));
        double rest = Measure.Median(phases.Select((p, i) => Math.Max(0, steps[i] - p.Values.Sum())).ToList());
        return (seconds, rest);
    }

    public static ReportTable Table(IEnumerable<(string Label, List<IReadOnlyDictionary<StepPhase, double>> Phases, List<double> Steps, List<ProcessCounters> Counters)> runs,
        double flops, MatmulResult? bf16, MatmulResult? fp32)
    {
        var table = new ReportTable("trainers: where a step's time goes (seconds, median; share of the step)").Column("run", right: false).Column("s/iter");
        foreach (var c in Columns) table.Column(c.Label);
        table.Column("everything else").Column("MFU vs bf16 peak").Column("MFU vs fp32 peak")
            .Column("CPU s (user + sys)").Column("minor faults").Column("preempted");
        foreach (var (label, phases, steps, counters) in runs)
        {
            if (Medians(phases, steps) is not var (seconds, rest)) continue;
            double step = Measure.Median(steps);
            var cells = new List<string> { label, $"{step:0.000}" };
            cells.AddRange(Columns.Select(c => Cell(seconds[c.Key], step)));
            cells.Add(Cell(rest, step));
            cells.Add(Mfu(flops, step, bf16));
            cells.Add(Mfu(flops, step, fp32));
            cells.AddRange(CounterCells(counters));
            table.Row(cells.ToArray());
        }
        table.Notes.Add("Phases are timed around the ops in the step (exclusive: a chunk move inside backward counts as chunk movement only). " +
                        "fwd matmul: the linear layers and the LM head; other fwd: embeddings, layer norms, GELU, residuals, the loss; " +
                        "backward: all of autograd's backward (libtorch does not split it); optimizer: gradient norm, clipping, Adam, parameter refresh; " +
                        "everything else: the step's wall time minus the phases (batch sampling, hooks between phases, timer overhead).");
        table.Notes.Add("CPU s, minor faults, preempted: medians per step of the process's CPU time (user + system), fresh pages touched and " +
                        "involuntary context switches (getrusage, between consecutive step ends). Another load on the machine shows as preemptions " +
                        "and stretches wall time far more than CPU time; system time above a few percent is page faults or spinning threads.");
        table.Notes.Add("MFU: model FLOPs per second over the matmul peak measured in this sitting (each dtype's); '-' when the matmul part did not run.");
        return table;
    }

    public static JsonObject? Json(List<IReadOnlyDictionary<StepPhase, double>> phases, List<double> steps)
    {
        if (Medians(phases, steps) is not var (seconds, rest)) return null;
        var o = new JsonObject();
        foreach (var (key, value) in seconds) o[key] = value;
        o["everything_else"] = rest;
        return o;
    }

    private static IEnumerable<string> CounterCells(List<ProcessCounters> counters)
    {
        if (counters.Count == 0) return new[] { "-", "-", "-" };
        return new[]
        {
            $"{Measure.Median(counters.Select(c => c.UserSeconds).ToList()):0.000} + {Measure.Median(counters.Select(c => c.SystemSeconds).ToList()):0.000}",
            $"{Measure.Median(counters.Select(c => (double)c.MinorFaults).ToList()):N0}",
            $"{Measure.Median(counters.Select(c => (double)c.InvoluntarySwitches).ToList()):N0}",
        };
    }

    public static JsonObject? CountersJson(List<ProcessCounters> counters) => counters.Count == 0 ? null : new JsonObject
    {
        ["user_seconds"] = Measure.Median(counters.Select(c => c.UserSeconds).ToList()),
        ["system_seconds"] = Measure.Median(counters.Select(c => c.SystemSeconds).ToList()),
        ["minor_faults"] = Measure.Median(counters.Select(c => (double)c.MinorFaults).ToList()),
        ["involuntary_switches"] = Measure.Median(counters.Select(c => (double)c.InvoluntarySwitches).ToList()),
    };

    private static string Cell(double seconds, double step) => $"{seconds:0.000} ({seconds / step * 100:0}%)";

    private static string Mfu(double flops, double step, MatmulResult? peak) =>
        peak is null ? "-" : $"{flops / step / 1e9 / peak.Gflops * 100:0.0}%";
}
