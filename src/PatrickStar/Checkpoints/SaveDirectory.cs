using System.Diagnostics;
using System.Text.RegularExpressions;
using PatrickStar.Config;

namespace PatrickStar.Checkpoints;

/// <summary>
/// The checkpoints under a save directory: listing, recovery of an interrupted re-save, removal of crashed saves'
/// leftovers, and pruning that only ever deletes older checkpoints of the run that saves.
/// </summary>
public static class SaveDirectory
{
    private static readonly Regex StepName = new(@"^step-(\d{1,18})$", RegexOptions.CultureInvariant);
    private static readonly Regex OldName = new(@"^(step-\d{1,18})\.old-(\d+)$", RegexOptions.CultureInvariant);

    public static string StepDirName(long step) => $"step-{step:D8}";

    /// <summary>Complete checkpoints (a step-N directory with a manifest) under a save directory, oldest first.</summary>
    public static List<(string Dir, long Step)> List(string saveDir)
    {
        if (!Directory.Exists(saveDir)) return [];
        return Directory.EnumerateDirectories(saveDir, "step-*")
            .Select(d => (Dir: d, Match: StepName.Match(Path.GetFileName(d))))
            .Where(x => x.Match.Success && File.Exists(Path.Combine(x.Dir, CheckpointParameters.ManifestName)))
            .Select(x => (x.Dir, long.Parse(x.Match.Groups[1].Value)))
            .OrderBy(x => x.Item2)
            .ToList();
    }

    /// <summary>
    /// Finishes a re-save of step N that a crash cut between its two renames (step-N moved to step-N.old-PID, the new
    /// copy not yet in place): the new copy goes into place if it is complete and verifies, else the old one goes back.
    /// A leftover .old-PID beside a complete step-N is deleted. Call it holding the save directory (its lock).
    /// </summary>
    public static void RecoverInterruptedResave(string saveDir, Action<string>? report = null)
    {
        if (!Directory.Exists(saveDir)) return;
        foreach (var old in Directory.EnumerateDirectories(saveDir, "step-*.old-*").ToList())
        {
            var match = OldName.Match(Path.GetFileName(old));
            // A live process may be between its two renames right now.
            if (!match.Success || int.TryParse(match.Groups[2].Value, out int pid) && (pid == Environment.ProcessId || ProcessAlive(pid))) continue;
            string final = Path.Combine(saveDir, match.Groups[1].Value);
            if (Directory.Exists(final))
            {
                Directory.Delete(old, recursive: true);
                continue;
            }
            string? partial = Directory.EnumerateDirectories(saveDir, $".{match.Groups[1].Value}.partial-*").FirstOrDefault(IsVerified);
            Directory.Move(partial ?? old, final);
            if (partial is not null) Directory.Delete(old, recursive: true);
            report?.Invoke($"Recovered {final} from an interrupted save ({(partial is null ? "the previous copy" : "its complete new copy")}).");
        }
    }

    private static bool IsVerified(string dir)
    {
        try
        {
            var manifest = CheckpointManifest.Read(dir);
            manifest.Verify();
            return manifest.StateName is not null;
        }
        catch (CheckpointException)
        {
            return false;
        }
    }

    /// <summary>Partial directories left by saves that crashed (their process is gone).</summary>
    public static void RemoveStalePartials(string saveDir)
    {
        foreach (var dir in Directory.EnumerateDirectories(saveDir, ".step-*.partial-*"))
        {
            string pid = dir[(dir.LastIndexOf('-') + 1)..];
            if (int.TryParse(pid, out int id) && id != Environment.ProcessId && !ProcessAlive(id))
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    public static bool ProcessAlive(int pid)
    {
        try { using var p = Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
    }

    /// <summary>
    /// Keeps the newest <paramref name="keepLast"/> checkpoints of this run (0 keeps all). Only checkpoints older than
    /// the one just saved, and saved with the same config (<see cref="RunIdentity"/>), are candidates: the checkpoint
    /// just written, newer ones and other runs' are never deleted.
    /// </summary>
    public static void Prune(string saveDir, int keepLast, long savedStep, TrainingConfig config)
    {
        if (keepLast <= 0) return;
        var older = List(saveDir).Where(c => c.Step < savedStep && RunIdentity.Matches(config, c.Dir)).ToList();
        foreach (var (dir, _) in older.SkipLast(keepLast - 1))
            Directory.Delete(dir, recursive: true);
    }

    /// <summary>Moves every checkpoint of a save directory into a new subfolder <c>earlier-UTC</c>; returns it.</summary>
    public static string MoveAside(string saveDir, IEnumerable<string> checkpointDirs)
    {
        string aside = Path.Combine(saveDir, $"earlier-{DateTime.UtcNow:yyyyMMdd'T'HHmmss'Z'}");
        for (int n = 2; Directory.Exists(aside); n++) aside = Path.Combine(saveDir, $"earlier-{DateTime.UtcNow:yyyyMMdd'T'HHmmss'Z'}-{n}");
        Directory.CreateDirectory(aside);
        foreach (var dir in checkpointDirs) Directory.Move(dir, Path.Combine(aside, Path.GetFileName(dir)));
        FileSystemSync.Directory(saveDir);
        return aside;
    }

    /// <summary><paramref name="name"/>, or name-2, name-3, ...: the first that holds no checkpoint and no run.</summary>
    public static string FirstUnused(string name)
    {
        string dir = name;
        for (int n = 2; List(dir).Count > 0 || File.Exists(SaveDirLock.PathIn(dir)); n++) dir = $"{name}-{n}";
        return dir;
    }
}
