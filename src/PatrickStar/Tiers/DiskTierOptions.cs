using PatrickStar.Profiling;

namespace PatrickStar.Tiers;

/// <summary>How chunk files are read and written: <see cref="Auto"/> probes O_DIRECT and falls back to buffered.</summary>
public enum DiskIoMode { Auto, Direct, Buffered }

/// <summary>
/// The disk tier's settings: config keys <c>disk_dir</c> / <c>disk_memory</c> (flags <c>--disk-dir DIR</c>,
/// <c>--disk-memory SIZE</c>). <see cref="BudgetBytes"/> bounds the chunk files' total size.
/// </summary>
public sealed record DiskTierOptions(string Directory, long BudgetBytes)
{
    public DiskIoMode IoMode { get; init; } = DiskIoMode.Auto;
    /// <summary>Requests the I/O thread may have queued before a caller blocks.</summary>
    public int QueueCapacity { get; init; } = 16;

    /// <summary>What needs no file system: a positive budget and queue, a directory name. Throws <see cref="DiskTierRefusedException"/>.</summary>
    public void ValidateValues()
    {
        if (string.IsNullOrWhiteSpace(Directory))
            throw new DiskTierRefusedException("disk_dir is empty; set --disk-dir / disk_dir to a directory on a local disk.");
        if (BudgetBytes <= 0)
            throw new DiskTierRefusedException($"disk_memory is {BudgetBytes} B; give --disk-memory / disk_memory a positive size such as 64GB.");
        if (QueueCapacity <= 0)
            throw new DiskTierRefusedException($"the disk tier's queue capacity is {QueueCapacity}; it must be at least 1.");
    }

    /// <summary>The directory exists (it is not created: a typo should not silently fill another disk).</summary>
    public void ValidateDirectoryExists()
    {
        if (!System.IO.Directory.Exists(Directory))
            throw new DiskTierRefusedException(File.Exists(Directory)
                ? $"disk_dir '{Directory}' is a file, not a directory; set --disk-dir / disk_dir to a directory."
                : $"disk_dir '{Directory}' does not exist; create it or set --disk-dir / disk_dir to an existing directory.");
    }

    /// <summary>The filesystem has room for the whole budget (statvfs, bytes an unprivileged process may use),
    /// given that <paramref name="bytesHeld"/> of it are already this tier's.</summary>
    public void ValidateFreeSpace(long bytesHeld = 0, Func<string, long>? availableBytes = null)
    {
        long free = (availableBytes ?? LibC.AvailableBytes)(Directory) + bytesHeld;
        if (free < BudgetBytes)
            throw new DiskTierRefusedException(
                $"disk_dir '{Directory}' has {Bytes.Format(free)} free ({free} B) but disk_memory needs {Bytes.Format(BudgetBytes)} ({BudgetBytes} B); " +
                "lower --disk-memory or free space / choose another --disk-dir.");
    }
}
