using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Optimizer;
using PatrickStar.Training;
using static TorchSharp.torch;

namespace PatrickStar.Checkpoints;

/// <summary>A checkpoint could not be read: the message names the file and what is wrong with it.</summary>
public sealed class CheckpointException : ModelFileException
{
    public CheckpointException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// Training checkpoints: everything a run needs to continue exactly where it stopped.
/// <para>
/// Layout of one checkpoint, <c>SAVE_DIR/step-NNNNNNNN/</c>:
/// <c>rank-RRRRR-of-NNNNN.safetensors</c> per rank, holding for each parameter that rank owns its fp32 master
/// (<c>param/NAME</c>), Adam momentum (<c>exp_avg/NAME</c>) and variance (<c>exp_avg_sq/NAME</c>), under the
/// model's own parameter names so that any chunk size or rank count can load it; <c>trainer-state.json</c>
/// (step, data position, random-generator states, Adam step, loss scaler, the learning-rate horizon and the
/// whole config); <c>manifest.json</c> (format, model sizes, files with their sizes and SHA-256).
/// </para>
/// <para>
/// Saving is atomic: everything is written into a hidden temporary directory, flushed to disk, and the directory
/// is renamed into place; a crash at any point leaves the previous checkpoints as they were, and a directory
/// without a manifest is never taken for a checkpoint.
/// </para>
/// </summary>
public static class TrainingCheckpoint
{
    public const string StateName = "trainer-state.json";

    /// <summary>Stages of a save, named for fault-injection tests (<see cref="SaveOptions.BeforeStage"/>).</summary>
    public static readonly string[] Stages = ["tensors", "state", "manifest", "rename"];

    public sealed record SaveOptions(int KeepLast = 3, Action<string>? BeforeStage = null);

    /// <summary>
    /// Saves the run's state as checkpoint <c>step-NNNNNNNN</c> under <paramref name="saveDir"/>; returns its path.
    /// In a data-parallel job every rank calls it: each writes the file of the parameters it owns into rank 0's
    /// temporary directory, and rank 0, once all have written, adds the state and the manifest and renames.
    /// </summary>
    public static string Save(string saveDir, TrainingConfig config, CheckpointModelSizes model, ITrainingEngine engine,
        Trainer trainer, SaveOptions? options = null, ICommunicator? comm = null)
    {
        options ??= new SaveOptions();
        int rank = comm?.Rank ?? 0, ranks = comm?.Size ?? 1;
        int step = trainer.StepsDone;
        string final = Path.Combine(saveDir, $"step-{step:D8}");
        // Rank 0's process id names the temporary directory for every rank (ranks as threads share one anyway).
        int leader = ranks == 1 ? Environment.ProcessId : (int)comm!.AllReduce(rank == 0 ? Environment.ProcessId : 0, ReduceOp.Max);
        string temp = Path.Combine(saveDir, $".step-{step:D8}.partial-{leader}");
        if (rank == 0)
        {
            Directory.CreateDirectory(saveDir);
            RemoveStalePartials(saveDir);
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            Directory.CreateDirectory(temp);
        }
        comm?.Barrier();
        try
        {
            options.BeforeStage?.Invoke("tensors");
            string file = RankFile(rank, ranks);
            WriteTensors(Path.Combine(temp, file), engine);
            if (comm is not null)
            {
                comm.Barrier(); // every rank's file is complete before rank 0 lists them
                if (rank != 0)
                {
                    comm.Barrier(); // rank 0 has renamed the directory into place
                    return final;
                }
            }

            options.BeforeStage?.Invoke("state");
            WriteDurably(Path.Combine(temp, StateName), StateJson(config, engine, trainer));

            options.BeforeStage?.Invoke("manifest");
            var files = Enumerable.Range(0, ranks).Select(r => RankFile(r, ranks)).ToList();
            WriteDurably(Path.Combine(temp, CheckpointParameters.ManifestName), ManifestJson(step, model, temp, files));
            FileSystemSync.Directory(temp);

            options.BeforeStage?.Invoke("rename");
            if (Directory.Exists(final))
            {
                // Saving the same step again: the old copy leaves only once the new one is complete.
                string old = final + $".old-{Environment.ProcessId}";
                Directory.Move(final, old);
                Directory.Move(temp, final);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                Directory.Move(temp, final);
            }
            FileSystemSync.Directory(saveDir);
        }
        catch
        {
            // A failed rank ends the whole job (its caller aborts), so no partner is left waiting at a barrier.
            try { if (rank == 0 && Directory.Exists(temp)) Directory.Delete(temp, recursive: true); } catch (IOException) { }
            throw;
        }
        Prune(saveDir, options.KeepLast);
        comm?.Barrier();
        return final;
    }

    public static string RankFile(int rank, int ranks) => $"rank-{rank:D5}-of-{ranks:D5}.safetensors";

    private static void WriteTensors(string path, ITrainingEngine engine)
    {
        var shapes = engine.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var names = engine.ParameterNames;
        var declared = new List<(string, ScalarType, long[])>();
        foreach (var name in names)
            foreach (var prefix in new[] { "param/", "exp_avg/", "exp_avg_sq/" })
                declared.Add((prefix + name, ScalarType.Float32, shapes[name]));
        using var writer = new SafetensorsWriter(path, declared);
        foreach (var name in names)
        {
            foreach (var (prefix, kind) in new[] { ("param/", StateKind.Master), ("exp_avg/", StateKind.Momentum), ("exp_avg_sq/", StateKind.Variance) })
            {
                using var t = engine.ReadState(name, kind);
                writer.Write(prefix + name, t);
            }
        }
        writer.Commit();
    }

    private static string StateJson(TrainingConfig config, ITrainingEngine engine, Trainer trainer)
    {
        using var rng = TorchSharp.torch.Generator.Default.get_state();
        var scaler = engine.Scaler.State;
        var state = new JsonObject
        {
            ["steps_done"] = trainer.StepsDone,
            ["batch_rng_state"] = trainer.Position.BatchRngState.ToString(),
            ["optimizer_step"] = engine.OptimizerStepCount,
            ["loss_scaler"] = new JsonObject
            {
                ["scale"] = scaler.Scale, ["clean_steps"] = scaler.CleanSteps, ["hysteresis_left"] = scaler.HysteresisLeft,
                ["dynamic"] = engine.Scaler.IsDynamic,
            },
            ["torch_rng_state"] = Convert.ToBase64String(rng.bytes.ToArray()),
            ["lr_schedule_horizon"] = config.Scheduler.TotalSteps ?? config.Steps,
            ["engine"] = engine.Name,
            ["saved_utc"] = DateTime.UtcNow.ToString("O"),
            ["config"] = JsonNode.Parse(ConfigLoader.ToJson(config)),
        };
        return state.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static string ManifestJson(int step, CheckpointModelSizes model, string dir, IEnumerable<string> files)
    {
        var fileInfo = new JsonArray();
        foreach (var f in files)
        {
            string full = Path.Combine(dir, f);
            fileInfo.Add(new JsonObject { ["name"] = f, ["bytes"] = new FileInfo(full).Length, ["sha256"] = Sha256(full) });
        }
        var manifest = new JsonObject
        {
            ["format"] = CheckpointParameters.Format,
            ["version"] = CheckpointParameters.SupportedVersion,
            ["step"] = step,
            ["model"] = new JsonObject
            {
                ["vocab_size"] = model.VocabSize, ["context_length"] = model.ContextLength, ["layers"] = model.Layers,
                ["hidden"] = model.Hidden, ["heads"] = model.Heads,
            },
            ["files"] = new JsonArray(files.Select(f => (JsonNode)JsonValue.Create(f)!).ToArray()),
            ["file_checks"] = fileInfo,
            ["state"] = StateName,
        };
        return manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static void WriteDurably(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Partial directories left by saves that crashed (their process is gone).</summary>
    private static void RemoveStalePartials(string saveDir)
    {
        foreach (var dir in Directory.EnumerateDirectories(saveDir, ".step-*.partial-*"))
        {
            string pid = dir[(dir.LastIndexOf('-') + 1)..];
            if (int.TryParse(pid, out int id) && id != Environment.ProcessId && !ProcessAlive(id))
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    private static bool ProcessAlive(int pid)
    {
        try { using var p = Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
    }

    /// <summary>Keeps the newest <paramref name="keepLast"/> checkpoints (0 keeps all).</summary>
    private static void Prune(string saveDir, int keepLast)
    {
        if (keepLast <= 0) return;
        var complete = List(saveDir);
        foreach (var (dir, _) in complete.SkipLast(keepLast))
            Directory.Delete(dir, recursive: true);
    }

    /// <summary>Complete checkpoints under a save directory, oldest first.</summary>
    public static List<(string Dir, long Step)> List(string saveDir) =>
        Directory.EnumerateDirectories(saveDir, "step-*")
            .Select(d => (Dir: d, Name: Path.GetFileName(d)))
            .Where(x => long.TryParse(x.Name["step-".Length..], out _) && File.Exists(Path.Combine(x.Dir, CheckpointParameters.ManifestName)))
            .Select(x => (x.Dir, long.Parse(x.Name["step-".Length..])))
            .OrderBy(x => x.Item2)
            .ToList();

    // ---- Loading ------------------------------------------------------------------------------------------

    /// <summary>What a checkpoint's trainer-state.json holds.</summary>
    public sealed record SavedState(int StepsDone, ulong BatchRngState, long OptimizerStep, LossScalerState Scaler,
        byte[] TorchRngState, int ScheduleHorizon, string ConfigJson);

    /// <summary>Reads and checks a checkpoint's manifest, files and state without loading any tensor.</summary>
    public static (string Dir, CheckpointModelSizes Model, SavedState State, List<string> Files) Inspect(string path)
    {
        string dir = CheckpointParameters.ResolveDirectory(path);
        string manifestPath = Path.Combine(dir, CheckpointParameters.ManifestName);
        JsonNode manifest;
        try { manifest = JsonNode.Parse(File.ReadAllText(manifestPath)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new CheckpointException($"{manifestPath} is not valid JSON ({e.Message}); the checkpoint is damaged: resume from an earlier one.", e); }
        string? format = manifest["format"]?.GetValue<string>();
        if (format != CheckpointParameters.Format)
            throw new CheckpointException($"{manifestPath}: format is '{format}', expected '{CheckpointParameters.Format}'.");
        if (manifest["file_checks"] is JsonArray checks)
        {
            foreach (var check in checks)
            {
                string name = check!["name"]!.GetValue<string>();
                string full = Path.Combine(dir, name);
                if (!File.Exists(full))
                    throw new CheckpointException($"{full} is missing: the checkpoint lists it in {manifestPath}. Resume from an earlier checkpoint.");
                long expected = check["bytes"]!.GetValue<long>();
                long actual = new FileInfo(full).Length;
                if (actual != expected)
                    throw new CheckpointException($"{full} has {actual:N0} bytes but the manifest says {expected:N0}: the file is truncated or was replaced. Resume from an earlier checkpoint.");
                string hash = Sha256(full);
                if (hash != check["sha256"]!.GetValue<string>())
                    throw new CheckpointException($"{full} is corrupted: its SHA-256 {hash} differs from the manifest's {check["sha256"]}. Resume from an earlier checkpoint.");
            }
        }
        var model = manifest["model"] ?? throw new CheckpointException($"{manifestPath} has no \"model\" section.");
        var sizes = new CheckpointModelSizes(model["vocab_size"]!.GetValue<int>(), model["context_length"]!.GetValue<int>(),
            model["layers"]!.GetValue<int>(), model["hidden"]!.GetValue<int>(), model["heads"]!.GetValue<int>());
        var files = (manifest["files"] as JsonArray ?? throw new CheckpointException($"{manifestPath} has no \"files\" list."))
            .Select(f => f!.GetValue<string>()).ToList();
        return (dir, sizes, ReadState(Path.Combine(dir, StateName)), files);
    }

    private static SavedState ReadState(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path} is missing: the checkpoint has no trainer state. Resume from an earlier checkpoint.");
        try
        {
            var s = JsonNode.Parse(File.ReadAllText(path))!;
            var sc = s["loss_scaler"]!;
            return new SavedState(
                s["steps_done"]!.GetValue<int>(),
                ulong.Parse(s["batch_rng_state"]!.GetValue<string>()),
                s["optimizer_step"]!.GetValue<long>(),
                new LossScalerState(sc["scale"]!.GetValue<double>(), sc["clean_steps"]!.GetValue<int>(), sc["hysteresis_left"]!.GetValue<int>()),
                Convert.FromBase64String(s["torch_rng_state"]!.GetValue<string>()),
                s["lr_schedule_horizon"]!.GetValue<int>(),
                s["config"]!.ToJsonString());
        }
        catch (Exception e) when (e is JsonException or NullReferenceException or FormatException or InvalidOperationException)
        {
            throw new CheckpointException($"{path} is damaged or incomplete ({e.Message}). Resume from an earlier checkpoint.", e);
        }
    }

    /// <summary>
    /// Loads a checkpoint into a run built with the same model sizes: masters, momentum and variance of every
    /// parameter the engine holds (whatever chunk size or rank count wrote them), the Adam step, the loss scaler,
    /// the random generators and the data position. Returns the checkpoint's directory.
    /// </summary>
    public static string Load(string path, CheckpointModelSizes expectedModel, ITrainingEngine engine, Trainer trainer)
    {
        var (dir, model, state, files) = Inspect(path);
        if (model != expectedModel)
            throw new CheckpointException($"{dir} holds a model with {Describe(model)}, but this run builds {Describe(expectedModel)}. " +
                                          "Resume with the same model settings (the checkpoint's config is in trainer-state.json).");
        var readers = files.Select(f => SafetensorsReader.Open(Path.Combine(dir, f))).ToList();
        try
        {
            var byName = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var r in readers)
                foreach (var e in r.Entries) byName[e.Name] = r;
            var missing = engine.ParameterNames
                .SelectMany(n => new[] { "param/" + n, "exp_avg/" + n, "exp_avg_sq/" + n })
                .Where(n => !byName.ContainsKey(n)).ToList();
            if (missing.Count > 0)
                throw new CheckpointException($"{dir} lacks {missing.Count} tensor(s) this model needs: {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? ", ..." : "")}.");
            foreach (var name in engine.ParameterNames)
            {
                foreach (var (prefix, kind) in new[] { ("param/", StateKind.Master), ("exp_avg/", StateKind.Momentum), ("exp_avg_sq/", StateKind.Variance) })
                {
                    using var t = byName[prefix + name].Read(prefix + name, ScalarType.Float32);
                    engine.WriteState(name, kind, t);
                }
            }
        }
        finally
        {
            foreach (var r in readers) r.Dispose();
        }
        engine.OptimizerStepCount = state.OptimizerStep;
        engine.Scaler.Restore(state.Scaler);
        using (var rng = tensor(state.TorchRngState, dtype: ScalarType.Byte))
            TorchSharp.torch.Generator.Default.set_state(rng);
        trainer.Restore(new TrainerPosition(state.StepsDone, state.BatchRngState));
        return dir;
    }

    private static string Describe(CheckpointModelSizes m) =>
        $"vocab {m.VocabSize}, context {m.ContextLength}, {m.Layers} layers, hidden {m.Hidden}, {m.Heads} heads";
}

/// <summary>fsync for directories: a rename is durable only once its directory is flushed.</summary>
internal static class FileSystemSync
{
    [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags);
    [DllImport("libc", SetLastError = true)] private static extern int fsync(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

    public static void Directory(string path)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = open(path, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0) return; // some file systems refuse: the data files themselves are already flushed
        fsync(fd);
        close(fd);
    }
}
