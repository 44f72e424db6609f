using PatrickStar.Config;

namespace PatrickStar.Checkpoints;

/// <summary>
/// Decides, before any data or model work, where a run starts and where it saves, so that no run overwrites or
/// prunes checkpoints it did not continue from:
/// <list type="bullet">
/// <item>--resume X: continue X; the save directory defaults to X's folder; refused if that folder holds newer checkpoints.</item>
/// <item>A save directory holding checkpoints of this config (<see cref="RunIdentity"/>): continue the newest.</item>
/// <item>Checkpoints of another config: refused, naming --resume, --no-resume and a new directory.</item>
/// <item>checkpoint.auto_resume = false (--no-resume): start fresh; the existing checkpoints move to SAVE_DIR/earlier-UTC/.</item>
/// </list>
/// In a data-parallel job rank 0 decides first (and moves or recovers directories); the others decide after it.
/// </summary>
public static class ResumePlanner
{
    /// <summary>Returns the checkpoint to resume from (null: a fresh start); may set config.Checkpoint.SaveDir.</summary>
    public static string? Decide(TrainingConfig config, string? explicitResume, bool leader, Action<string> report)
    {
        var ck = config.Checkpoint;
        if (explicitResume is not null)
        {
            if (!ck.AutoResume)
                throw new ConfigException("--resume continues a checkpoint and --no-resume (checkpoint.auto_resume = false) starts fresh: give only one.");
            // A save directory whose newest checkpoint a crash left mid-re-save is repaired first (only dead processes' leftovers).
            if (leader && Directory.Exists(explicitResume) && !File.Exists(Path.Combine(explicitResume, CheckpointParameters.ManifestName)))
                SaveDirectory.RecoverInterruptedResave(explicitResume, report);
            string dir = CheckpointParameters.ResolveDirectory(explicitResume);
            long step = StepOf(dir);
            if (ck.SaveDir is null)
            {
                ck.SaveDir = Path.GetDirectoryName(Path.GetFullPath(dir))!;
                if (leader) report($"Checkpoints will be saved to {ck.SaveDir}, the resumed checkpoint's folder (--save-dir chooses another).");
            }
            var newer = SaveDirectory.List(ck.SaveDir).Where(c => c.Step > step).ToList();
            if (newer.Count > 0)
                throw new ConfigException($"{ck.SaveDir} holds {Path.GetFileName(newer[^1].Dir)}, newer than the checkpoint resumed ({dir}, step {step}); " +
                                          "saving there would overwrite or prune it. Give another --save-dir to continue from that step, or resume the newest.");
            return dir;
        }
        if (ck.SaveDir is null) return null;
        if (leader) SaveDirectory.RecoverInterruptedResave(ck.SaveDir, report);
        var existing = SaveDirectory.List(ck.SaveDir);
        if (existing.Count == 0) return null;
        if (!ck.AutoResume)
        {
            string aside = SaveDirectory.MoveAside(ck.SaveDir, existing.Select(c => c.Dir));
            report($"--no-resume: moved the {existing.Count} checkpoint(s) already in {ck.SaveDir} ({Path.GetFileName(existing[0].Dir)} to " +
                   $"{Path.GetFileName(existing[^1].Dir)}) to {aside}; this run starts at step 0. Delete that folder when you no longer need it.");
            return null;
        }
        var (newest, newestStep) = existing[^1];
        var state = TrainerStateFile.Read(Path.Combine(newest, TrainerStateFile.Name), StepOf(newest));
        var differences = RunIdentity.Differences(config, state.ConfigJson);
        if (differences.Count > 0)
            throw new ConfigException($"{ck.SaveDir} holds checkpoints of another config (newest {Path.GetFileName(newest)}; {string.Join(", ", differences.Take(4))}" +
                                      $"{(differences.Count > 4 ? ", ..." : "")}). Continue it with --resume {ck.SaveDir} (your flags apply), " +
                                      "start afresh with --no-resume (moves them aside), or use a new --save-dir.");
        if (newestStep >= config.Steps)
            throw new ConfigException($"{ck.SaveDir} already holds {Path.GetFileName(newest)} of this run, and steps = {config.Steps}: raise --steps above {newestStep} " +
                                      "to continue it, or start afresh with --no-resume (moves its checkpoints aside) or a new --save-dir.");
        if (leader) report($"Resuming from {newest} (step {newestStep}): {ck.SaveDir} holds checkpoints of this config. --no-resume starts afresh instead.");
        return newest;
    }

    private static long StepOf(string checkpointDir) =>
        CheckpointManifest.Read(checkpointDir).Step
        ?? TrainerStateFile.Read(Path.Combine(checkpointDir, TrainerStateFile.Name), null).StepsDone;
}
