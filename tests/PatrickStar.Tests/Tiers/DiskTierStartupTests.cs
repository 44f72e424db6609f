using PatrickStar.Tiers;
using Xunit;

namespace PatrickStar.Tests.Tiers;

public class DiskTierStartupTests
{
    [Fact]
    public void AMissingDirectoryIsRefused()
    {
        using var dir = new TempDir();
        string missing = Path.Combine(dir.Path, "nope");
        var e = Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(missing, 4096)));
        Assert.Equal($"disk_dir '{missing}' does not exist; create it or set --disk-dir / disk_dir to an existing directory.", e.Message);
        Assert.False(Directory.Exists(missing));
    }

    [Fact]
    public void AnUnwritableDirectoryIsRefused()
    {
        // /sys refuses new files even to root (tests here run as root, so chmod would not do).
        var e = Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions("/sys", 4096)));
        Assert.Equal("disk_dir '/sys' is not writable (Permission denied (errno 13)); choose a directory you can write, or fix its permissions.", e.Message);
    }

    [Fact]
    public void ABudgetBeyondTheFreeSpaceIsRefusedWithBytesNeededAndFree()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<DiskTierRefusedException>(() =>
            DiskTier.Open(new DiskTierOptions(dir.Path, 3L << 30), availableBytes: _ => 1L << 30));
        Assert.Equal($"disk_dir '{dir.Path}' has 1.0 GiB free (1073741824 B) but disk_memory needs 3.0 GiB (3221225472 B); " +
                     "lower --disk-memory or free space / choose another --disk-dir.", e.Message);
        Assert.Empty(Directory.GetFiles(dir.Path)); // the lock is released again

        // And through the real statvfs: no filesystem here has 1 EiB.
        e = Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(dir.Path, 1L << 60)));
        Assert.Contains("but disk_memory needs 1024.0 PiB (1152921504606846976 B)", e.Message);
    }

    [Fact]
    public void ADeadRunsFilesAreRemovedWithAMessage()
    {
        using var dir = new TempDir();
        int dead = UnusedPid();
        File.WriteAllText(Path.Combine(dir.Path, $"pstar-{dead}.lock"), $"{dead} 12345\n");
        File.WriteAllBytes(Path.Combine(dir.Path, $"pstar-{dead}-master.chunks"), new byte[8192]);
        File.WriteAllText(Path.Combine(dir.Path, "mine.txt"), "not ours"); // someone else's file stays

        var log = new List<string>();
        using (var tier = DiskTier.Open(new DiskTierOptions(dir.Path, 4096), log.Add))
        {
            Assert.Equal($"disk tier: removed 2 file(s) (8.0 KiB) left in {dir.Path} by a dead run (pid {dead}).", log[0]);
            Assert.Equal(tier.StartupMessages, log);
            Assert.False(File.Exists(Path.Combine(dir.Path, $"pstar-{dead}-master.chunks")));
        }
        Assert.Equal(new[] { "mine.txt" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void ARecycledPidWithAnotherStartTimeCountsAsDead()
    {
        using var dir = new TempDir();
        File.WriteAllText(Path.Combine(dir.Path, "pstar-1.lock"), "1 999999999999\n"); // pid 1 exists, but started at another time
        var log = new List<string>();
        using var tier = DiskTier.Open(new DiskTierOptions(dir.Path, 4096), log.Add);
        Assert.StartsWith("disk tier: removed 1 file(s)", log[0]);
    }

    [Fact]
    public void ALiveOtherRunsDirectoryIsRefused()
    {
        using var dir = new TempDir();
        string lockPath = Path.Combine(dir.Path, "pstar-1.lock");
        File.WriteAllText(lockPath, $"1 {StartTime(1)}\n"); // pid 1 is always alive
        var e = Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(dir.Path, 4096)));
        Assert.Equal($"disk_dir '{dir.Path}' is in use by a running process (pid 1, {lockPath}); stop it or choose another --disk-dir.", e.Message);
        Assert.True(File.Exists(lockPath));

        // The same process twice on one directory is refused too.
        File.Delete(lockPath);
        using var first = DiskTier.Open(new DiskTierOptions(dir.Path, 4096));
        e = Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(dir.Path, 4096)));
        Assert.StartsWith($"disk_dir '{dir.Path}' is already used by this process", e.Message);
    }

    [Fact]
    public void ARunKilledWithSigkillLeavesNothingThatBreaksTheNext()
    {
        // A real process holds the directory (lock written as DiskDirLock writes it), then dies by SIGKILL.
        using var dir = new TempDir();
        using var holder = System.Diagnostics.Process.Start("sleep", "60");
        string lockPath = Path.Combine(dir.Path, $"pstar-{holder.Id}.lock");
        File.WriteAllText(lockPath, $"{holder.Id} {StartTime(holder.Id)}\n");
        File.WriteAllBytes(Path.Combine(dir.Path, $"pstar-{holder.Id}-param.chunks"), new byte[4096]);
        Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(dir.Path, 4096)));

        holder.Kill(); // SIGKILL
        holder.WaitForExit();
        var log = new List<string>();
        using var tier = DiskTier.Open(new DiskTierOptions(dir.Path, 4096), log.Add);
        Assert.StartsWith($"disk tier: removed 2 file(s)", log[0]);
        Assert.EndsWith($"by a dead run (pid {holder.Id}).", log[0]);
        tier.CreateStore("param", 4096, 1);
    }

    [Theory]
    [InlineData("", 4096, "disk_dir is empty; set --disk-dir / disk_dir to a directory on a local disk.")]
    [InlineData("/tmp", 0, "disk_memory is 0 B; give --disk-memory / disk_memory a positive size such as 64GB.")]
    public void BadValuesAreRefused(string directory, long budget, string message) =>
        Assert.Equal(message, Assert.Throws<DiskTierRefusedException>(() => DiskTier.Open(new DiskTierOptions(directory, budget))).Message);

    private static string StartTime(int pid) => File.ReadAllText($"/proc/{pid}/stat").Split(") ")[1].Split(' ')[19];

    private static int UnusedPid()
    {
        for (int pid = 4_000_000; pid > 1000; pid--)
            if (!Directory.Exists($"/proc/{pid}")) return pid;
        throw new InvalidOperationException("no unused pid found");
    }
}
