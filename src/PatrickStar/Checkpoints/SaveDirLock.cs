using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Checkpoints;

/// <summary>
/// One training run per save directory: <c>SAVE_DIR/.pstar-train.lock</c> holds the owner's pid, host and start
/// time, created exclusively. A second run is refused while the owner lives; a lock whose process is gone (or
/// whose pid now belongs to a process started after it) is stale and is taken over, with a message. Creating the
/// lock is also the check, before any work, that the save directory can be written.
/// </summary>
public sealed class SaveDirLock : IDisposable
{
    public const string FileName = ".pstar-train.lock";

    public string Path { get; }
    private readonly string content;
    private readonly string? createdDirectory; // removed again on release if nothing was saved into it

    private SaveDirLock(string path, string content, string? createdDirectory)
    {
        Path = path;
        this.content = content;
        this.createdDirectory = createdDirectory;
    }

    public static string PathIn(string saveDir) => System.IO.Path.Combine(saveDir, FileName);

    /// <summary>Takes the save directory (creating it); <paramref name="report"/> hears of a stale lock taken over.</summary>
    public static SaveDirLock Acquire(string saveDir, Action<string>? report = null)
    {
        string full = System.IO.Path.GetFullPath(saveDir);
        string path = PathIn(full);
        string? created = null;
        var started = DateTime.UtcNow;
        string content = new JsonObject
        {
            ["pid"] = Environment.ProcessId, ["host"] = Environment.MachineName, ["started_utc"] = started.ToString("O"),
        }.ToJsonString();
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                if (!Directory.Exists(full))
                {
                    Directory.CreateDirectory(full);
                    created = full;
                }
                using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                {
                    stream.Write(System.Text.Encoding.UTF8.GetBytes(content));
                    stream.Flush(flushToDisk: true);
                }
                return new SaveDirLock(path, content, created);
            }
            catch (IOException) when (File.Exists(path))
            {
                var holder = Holder.Read(path);
                if (holder is null || !holder.IsStale() || attempt > 0)
                    throw new CheckpointException($"save directory {full} is in use by another run ({holder?.ToString() ?? "unreadable lock"}; lock file {path}). " +
                                                  "Wait for that run to end, use another --save-dir, or delete the lock file if that run is gone.");
                report?.Invoke($"Taking over {path}: the run that held it ({holder}) is gone.");
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException($"save directory {full} cannot be written ({e.Message}). Fix its permissions or choose another --save-dir.", e);
            }
        }
    }

    /// <summary>Whose lock it is, as its file says.</summary>
    private sealed record Holder(int Pid, string Host, DateTime StartedUtc)
    {
        public static Holder? Read(string path)
        {
            try
            {
                var o = JsonNode.Parse(File.ReadAllText(path))!;
                return new Holder(o["pid"]!.GetValue<int>(), o["host"]!.GetValue<string>(),
                    DateTime.Parse(o["started_utc"]!.GetValue<string>(), null, System.Globalization.DateTimeStyles.RoundtripKind));
            }
            catch (Exception e) when (e is IOException or JsonException or NullReferenceException or InvalidOperationException or FormatException)
            {
                return null;
            }
        }

        /// <summary>Only a lock of this host can be judged; its pid must be dead, or reused by a process started after the lock.</summary>
        public bool IsStale()
        {
            if (Host != Environment.MachineName) return false;
            try
            {
                using var p = Process.GetProcessById(Pid);
                return p.HasExited || p.StartTime.ToUniversalTime() > StartedUtc.AddSeconds(1);
            }
            catch (ArgumentException)
            {
                return true;
            }
        }

        public override string ToString() => $"pid {Pid} on host {Host}, started {StartedUtc:yyyy-MM-dd HH:mm:ss} UTC";
    }

    /// <summary>Removes the lock if it is still this run's (and the directory, if this run created it and left it empty).</summary>
    public void Dispose()
    {
        try
        {
            if (File.Exists(Path) && File.ReadAllText(Path) == content) File.Delete(Path);
            if (createdDirectory is not null && !Directory.EnumerateFileSystemEntries(createdDirectory).Any()) Directory.Delete(createdDirectory);
        }
        catch (IOException) { }
    }
}
