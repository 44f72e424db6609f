using System.CommandLine;
using System.Text.Json;
using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using Spectre.Console;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar estimate`: will a run fit, before anything is allocated; and if not, which change makes it fit.</summary>
public static class EstimateCommand
{
    /// <summary>Exit code of a run that does not fit (1 stays "bad input", 70 "internal error").</summary>
    public const int DoesNotFit = 3;

    public static Command Build()
    {
        var config = new Option<FileInfo?>("--config") { Description = "A JSON config file, as for `pstar train`; flags override it." };
        var ranks = new Option<int?>("--ranks") { Description = "Data-parallel ranks; the chunk engine shards model data 1/N per rank (default 1)." };
        var json = new Option<bool>("--json") { Description = "Print the estimate as JSON instead of a table." };
        var diskFlags = new EstimateDisk();

        var command = new Command("estimate",
            "Will it fit? Model data (in the chunk layout the engine would build), the non-model peaks and where each lives, " +
            "against the device and host budgets `pstar train` would take with the same flags; " +
            $"exit code 0 when it fits, {DoesNotFit} when it does not (with the changes that would make it fit)." + Examples.Format(
                "pstar estimate --model gpt2 --engine chunked --device-memory 2GiB",
                "pstar estimate --model llama-2-7b --engine chunked --device-memory 24GiB --host-memory 200GiB",
                "pstar estimate --config ds_config.json --ranks 4 --json",
                "pstar estimate --model gpt2-xl --engine chunked --host-memory 8GiB --disk-dir /nvme --disk-memory 64GiB --step-seconds 20"));
        command.Options.Add(config);
        var flags = ConfigFlags.AddTo(command, ConfigFlags.ForEstimate);
        command.Options.Add(ranks);
        command.Options.Add(json);
        diskFlags.AddTo(command);

        command.SetAction(r => CommandErrors.Run(() =>
        {
            var cfgFile = r.GetValue(config);
            var warnings = new List<string>();
            var c = cfgFile is null ? new TrainingConfig() : ConfigLoader.Load(cfgFile.FullName, warnings);
            var given = flags.Apply(r, c, warnings);
            foreach (string warning in warnings) Console.Error.WriteLine($"warning: {warning}");
            // The preset's context caps the default sequence, as an explicit --seq is checked against it.
            var sizes = ModelFamilies.Resolve(c.Model).Sizes;
            if (cfgFile is null && !given.Any(o => o.Key == "seq_len")) c.SequenceLength = Math.Min(c.SequenceLength, sizes.ContextLength);
            ConfigLoader.Validate(c, ranks: r.GetValue(ranks) ?? 1);
            var choice = GptRun.ResolveChoice(c);

            var target = TorchRuntime.ResolveDevice(c.Device);
            var (deviceBudget, hostBudget) = EstimateBudgets.For(c, target);
            if (EstimateBudgets.BeyondPhysicalMemory(deviceBudget, hostBudget, target.type == TorchSharp.DeviceType.CPU, c.Engine == "chunked",
                    MemoryMeter.PhysicalMemory()) is string impossible)
                throw new ConfigException(impossible);
            var estimate = MemoryEstimator.Estimate(MemoryEstimator.RequestFor(c, choice, deviceBudget, hostBudget, r.GetValue(ranks) ?? 1));
            var disk = diskFlags.Wanted(r, c) ? diskFlags.Estimate(r, c, estimate) : null;
            if (disk?.Refusal is string refusal)
            {
                Console.Error.WriteLine($"error: {refusal}");
                return DoesNotFit;
            }
            if (disk is not null) estimate = DiskEstimator.WithDisk(estimate, disk);
            if (r.GetValue(json)) Console.WriteLine(ToJson(estimate, disk));
            else
            {
                Print(estimate, c.Model.Preset);
                if (disk is not null) EstimateDisk.Print(disk);
            }
            return estimate.Fits ? 0 : DoesNotFit;
        }));
        return command;
    }

    private static void Print(MemoryEstimate e, string? preset)
    {
        var r = e.Request;
        var m = r.Model;
        AnsiConsole.MarkupLine(CommandErrors.Esc(
            $"{preset ?? "custom"}: {m.Layers} layers, hidden {m.Hidden}, {m.Heads} heads, vocab {m.VocabSize:N0}, context {m.ContextLength} = {e.Parameters:N0} parameters; " +
            $"{r.Engine}{(r.Chunked ? $" ({r.Placement.ToString().ToLowerInvariant()})" : "")} engine, {PrecisionNames.Name(r.Precision)}, " +
            $"micro-batch {r.MicroBatch} x {r.Sequence}, accumulation {r.GradientAccumulation}{(r.Checkpointing ? ", checkpointing" : "")}, {r.Ranks} rank{(r.Ranks > 1 ? "s" : "")}"));

        var data = new Table().Border(TableBorder.Rounded).Title("Memory per rank");
        data.AddColumn("what");
        data.AddColumn(new TableColumn("bytes").RightAligned());
        data.AddColumn(new TableColumn("").RightAligned());
        data.AddColumn("where");
        foreach (var item in e.ModelData)
            data.AddRow(CommandErrors.Esc(item.Kind), $"{item.Bytes:N0}", Bytes.Format(item.Bytes), CommandErrors.Esc(item.Placement));
        data.AddRow("[bold]model data[/]", $"{e.ModelDataBytes:N0}", Bytes.Format(e.ModelDataBytes), "");
        data.AddRow("activations (peak)", $"{e.Activations.Peak:N0}", Bytes.Format(e.Activations.Peak), CommandErrors.Esc($"device, at {e.Activations.PeakPhase}"));
        AnsiConsole.Write(data);

        if (e.Layout is { } layout)
            AnsiConsole.MarkupLine(CommandErrors.Esc(
                $"Chunks: {layout.ChunkCount} of {layout.ChunkSize:N0} elements, utilisation {layout.Utilisation * 100:0.0}%; " +
                $"largest working set {Bytes.Format(e.WorkingSetBytes)} ({e.WorkingSetModule})."));

        var tiers = new Table().Border(TableBorder.Rounded).Title("Tiers");
        foreach (var c in new[] { "tier", "needed", "available", "short", "for" }) tiers.AddColumn(c);
        foreach (var t in e.Tiers)
            tiers.AddRow(t.Tier, Bytes.Format(t.Needed), t.Available is long a ? Bytes.Format(a) : "unknown",
                t.Short > 0 ? $"[red]{Bytes.Format(t.Short)}[/]" : "-", CommandErrors.Esc(t.What));
        AnsiConsole.Write(tiers);

        if (e.Fits)
        {
            AnsiConsole.MarkupLine("[green]Fits.[/]");
            return;
        }
        AnsiConsole.MarkupLine("[red]Does not fit.[/]");
        if (e.Knobs.Count == 0)
            AnsiConsole.MarkupLine("No change tried (bf16-fp32, checkpointing, micro-batch, sequence, ranks, memory, and combinations) makes it fit: choose a smaller model.");
        else
        {
            var knobs = new Table().Border(TableBorder.Rounded).Title("Any one of these makes it fit");
            foreach (var c in new[] { "change", "flags", "device needs", "host needs" }) knobs.AddColumn(c);
            foreach (var k in e.Knobs)
                knobs.AddRow(CommandErrors.Esc(k.Change), CommandErrors.Esc(k.Flags),
                    Bytes.Format(k.Result.Tiers.First(t => t.Tier == "device").Needed),
                    k.Result.Tiers.FirstOrDefault(t => t.Tier == "host") is { } h ? Bytes.Format(h.Needed) : "-");
            AnsiConsole.Write(knobs);
        }
    }

    private static string ToJson(MemoryEstimate e, DiskEstimate? disk) => JsonSerializer.Serialize(new
    {
        fits = e.Fits,
        parameters = e.Parameters,
        engine = e.Request.Engine,
        placement = e.Request.Placement.ToString().ToLowerInvariant(),
        precision = PrecisionNames.Name(e.Request.Precision),
        micro_batch = e.Request.MicroBatch,
        sequence = e.Request.Sequence,
        checkpointing = e.Request.Checkpointing,
        ranks = e.Request.Ranks,
        chunk_elements = e.Layout?.ChunkSize,
        chunks = e.Layout?.ChunkCount,
        chunk_utilisation = e.Layout?.Utilisation,
        model_data = e.ModelData.Select(m => new { kind = m.Kind, bytes = m.Bytes, placement = m.Placement }),
        model_data_bytes = e.ModelDataBytes,
        activation_peak_bytes = e.Activations.Peak,
        activation_peak_phase = e.Activations.PeakPhase,
        working_set_bytes = e.WorkingSetBytes,
        tiers = e.Tiers.Select(t => new { tier = t.Tier, needed = t.Needed, available = t.Available, @short = t.Short, what = t.What }),
        knobs = e.Knobs.Select(k => new { change = k.Change, flags = k.Flags }),
        disk = disk is null ? null : EstimateDisk.Json(disk),
    }, new JsonSerializerOptions { WriteIndented = true });
}
