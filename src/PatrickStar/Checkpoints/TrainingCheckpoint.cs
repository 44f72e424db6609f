using System.Runtime.InteropServices;
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
    public const string StateName = TrainerStateFile.Name;

    /// <summary>Stages of a save, named for fault-injection tests (<see cref="SaveOptions.BeforeStage"/>).</summary>
    public static readonly string[] Stages = ["tensors", "state", "manifest", "rename"];

    /// <summary>Between the two renames of a re-save of the same step (step-N moved aside, the new copy not yet in place).</summary>
    public const string ResaveStage = "resave";

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
        string final = Path.Combine(saveDir, SaveDirectory.StepDirName(step));
        // Rank 0's process id names the temporary directory for every rank (ranks as threads share one anyway).
        int leader = ranks == 1 ? Environment.ProcessId : (int)comm!.AllReduce(rank == 0 ? Environment.ProcessId : 0, ReduceOp.Max);
        string temp = Path.Combine(saveDir, $".step-{step:D8}.partial-{leader}");
        string? old = null;
        if (rank == 0)
        {
            Directory.CreateDirectory(saveDir);
            SaveDirectory.RecoverInterruptedResave(saveDir); // before the stale partials go: one may be the only complete copy
            SaveDirectory.RemoveStalePartials(saveDir);
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
            WriteDurably(Path.Combine(temp, StateName), TrainerStateFile.Json(config, engine, trainer));

            options.BeforeStage?.Invoke("manifest");
            var files = Enumerable.Range(0, ranks).Select(r => RankFile(r, ranks)).ToList();
            WriteDurably(Path.Combine(temp, CheckpointParameters.ManifestName), CheckpointManifest.Json(step, model, temp, files, StateName));
            FileSystemSync.Directory(temp);

            options.BeforeStage?.Invoke("rename");
            if (Directory.Exists(final))
            {
                // Saving the same step again: the old copy leaves only once the new one is in place. A crash between the
                // two renames is finished by SaveDirectory.RecoverInterruptedResave (the complete new copy goes into place).
                old = final + $".old-{Environment.ProcessId}";
                Directory.Move(final, old);
                options.BeforeStage?.Invoke(ResaveStage);
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
            try
            {
                if (old is not null && Directory.Exists(old) && !Directory.Exists(final)) Directory.Move(old, final);
                if (rank == 0 && Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            }
            catch (IOException) { }
            throw;
        }
        SaveDirectory.Prune(saveDir, options.KeepLast, step, config);
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

    private static void WriteDurably(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Complete checkpoints under a save directory, oldest first.</summary>
    public static List<(string Dir, long Step)> List(string saveDir) => SaveDirectory.List(saveDir);

    // ---- Loading ------------------------------------------------------------------------------------------

    /// <summary>Reads a checkpoint's manifest and state and verifies every file's size and SHA-256, without loading any tensor.</summary>
    public static (string Dir, CheckpointModelSizes Model, SavedState State, List<string> Files) Inspect(string path)
    {
        string dir = CheckpointParameters.ResolveDirectory(path);
        var manifest = CheckpointManifest.Read(dir);
        if (manifest.StateName is null)
            throw new CheckpointException($"{manifest.Path} names no trainer state: {dir} holds weights only (pstar export, eval and generate read it), not a run to resume.");
        manifest.Verify();
        return (dir, manifest.Model, TrainerStateFile.Read(Path.Combine(dir, manifest.StateName), manifest.Step), manifest.Files.ToList());
    }

    /// <summary>
    /// Loads a checkpoint into a run built with the same model sizes: masters, momentum and variance of every
    /// parameter the engine holds (whatever chunk size or rank count wrote them), the Adam step, the loss scaler,
    /// the random generators and the data position. Returns the checkpoint's directory.
    /// </summary>
    public static string Load(string path, CheckpointModelSizes expectedModel, ITrainingEngine engine, Trainer trainer) =>
        Load(Inspect(path), expectedModel, engine, trainer);

    /// <summary>Loads a checkpoint <see cref="Inspect"/> already verified (hashing a large checkpoint twice would double the read).</summary>
    public static string Load((string Dir, CheckpointModelSizes Model, SavedState State, List<string> Files) inspected,
        CheckpointModelSizes expectedModel, ITrainingEngine engine, Trainer trainer)
    {
        var (dir, model, state, files) = inspected;
        if (model != expectedModel)
            throw new CheckpointException($"{dir} holds a model with {Describe(model)}, but this run builds {Describe(expectedModel)}. " +
                                          "Resume with the same model settings (the checkpoint's config is in trainer-state.json).");
        // libtorch aborts the process on a generator state of the wrong size: check it first.
        using (var current = TorchSharp.torch.Generator.Default.get_state())
            if (current.numel() != state.TorchRngState.Length)
                throw new CheckpointException($"{Path.Combine(dir, StateName)}: \"torch_rng_state\" holds {state.TorchRngState.Length:N0} bytes, but torch's " +
                                              $"generator state has {current.numel():N0}; the checkpoint is damaged or from another torch: use an earlier one.");
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
