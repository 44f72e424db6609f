using System.Globalization;
using PatrickStar.Profiling;

namespace PatrickStar.Tiers;

/// <summary>
/// This process's claim on a disk directory: the lock file <c>pstar-PID.lock</c> ("PID STARTTIME", the start time from
/// /proc so a recycled pid is not mistaken for the old run), and every file this process puts there is named
/// <c>pstar-PID-*</c>. On acquire, files of a dead run (kill -9, power loss) are removed with a message; a live other run
/// makes the directory refused. Dispose removes this process's files and the lock.
/// </summary>
public sealed class DiskDirLock : IDisposable
{
    private const string Prefix = "pstar-";
    private bool _released;

    private DiskDirLock(string directory, int pid)
    {
        Directory = directory;
        Pid = pid;
    }

    public string Directory { get; }
    public int Pid { get; }
    public string LockPath => LockPathOf(Directory, Pid);

    /// <summary>The path of this process's file <paramref name="name"/> ("master.chunks") in the directory.</summary>
    public string FilePath(string name) => Path.Combine(Directory, $"{Prefix}{Pid}-{name}");

    /// <summary>Takes the directory, removing a dead run's files first (reported through <paramref name="log"/>).
    /// Throws <see cref="DiskTierRefusedException"/> for a live other run, or an unwritable directory.</summary>
    public static DiskDirLock Acquire(string directory, Action<string> log)
    {
        int self = Environment.ProcessId;
        foreach (var (pid, files) in FilesByPid(directory))
        {
            if (pid == self) continue;
            string lockPath = LockPathOf(directory, pid);
            if (IsAlive(lockPath, pid))
                throw new DiskTierRefusedException(
                    $"disk_dir '{directory}' is in use by a running process (pid {pid}, {lockPath}); stop it or choose another --disk-dir.");
            long bytes = files.Sum(f => new FileInfo(f).Exists ? new FileInfo(f).Length : 0);
            foreach (var f in files) File.Delete(f);
            log($"disk tier: removed {files.Count} file(s) ({Bytes.Format(bytes)}) left in {directory} by a dead run (pid {pid}).");
        }

        var claim = new DiskDirLock(directory, self);
        int fd = PosixChunkFile.OpenRaw(claim.LockPath, direct: false, exclusive: true, out int errno);
        if (fd < 0)
            throw new DiskTierRefusedException(errno == 17 // EEXIST
                ? $"disk_dir '{directory}' is already used by this process ({claim.LockPath}); give each disk tier its own directory."
                : $"disk_dir '{directory}' is not writable ({LibC.ErrorText(errno)}); choose a directory you can write, or fix its permissions.");
        LibC.Close(fd);
        File.WriteAllText(claim.LockPath, $"{self} {StartTime(self)}\n");
        return claim;
    }

    /// <summary>Every pstar-PID* file in the directory, by PID (a lock without data files, data files without a lock).</summary>
    private static Dictionary<int, List<string>> FilesByPid(string directory)
    {
        var byPid = new Dictionary<int, List<string>>();
        foreach (var path in System.IO.Directory.EnumerateFiles(directory, Prefix + "*"))
        {
            string rest = Path.GetFileName(path)[Prefix.Length..];
            int end = rest.IndexOfAny(['-', '.']);
            if (end <= 0 || !int.TryParse(rest[..end], NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            if (!byPid.TryGetValue(pid, out var list)) byPid[pid] = list = new List<string>();
            list.Add(path);
        }
        return byPid;
    }

    /// <summary>Alive: the pid exists and, where the lock recorded it, still has the start time it had when it wrote the lock.
    /// Data files without a lock belong to no live run (the lock is written before any of them).</summary>
    private static bool IsAlive(string lockPath, int pid)
    {
        if (!File.Exists(lockPath)) return false;
        string? now = StartTime(pid);
        if (now is null) return false;
        string[] recorded = File.ReadAllText(lockPath).Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
        return recorded.Length < 2 || recorded[1] == now;
    }

    /// <summary>Field 22 of /proc/PID/stat (clock ticks since boot), or null if there is no such process.</summary>
    internal static string? StartTime(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return fields[19];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static string LockPathOf(string directory, int pid) => Path.Combine(directory, $"{Prefix}{pid}.lock");

    /// <summary>Removes this process's files, the lock last (so a crash midway still leaves a lock marking them stale).</summary>
    public void Dispose()
    {
        if (_released) return;
        _released = true;
        if (!System.IO.Directory.Exists(Directory)) return;
        foreach (var f in System.IO.Directory.EnumerateFiles(Directory, $"{Prefix}{Pid}-*")) File.Delete(f);
        File.Delete(LockPath);
    }
}
