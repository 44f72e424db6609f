using System.Text.RegularExpressions;
using PatrickStar.Profiling;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// "No space left on device" (ENOSPC) anywhere in an exception chain, as one line: the folder, the bytes needed
/// and the bytes available. Whoever writes may record the bytes it needed in <c>Exception.Data[BytesNeededKey]</c>;
/// otherwise, for a checkpoint, the size of the newest complete checkpoint beside the one being written stands for it.
/// </summary>
public static partial class DiskFull
{
    public const string BytesNeededKey = "pstar.bytes_needed";
    private const int ENOSPC = 28;

    public static string? Describe(Exception e)
    {
        IOException? full = null;
        for (Exception? x = e; x is not null && full is null; x = x.InnerException)
            if (x is IOException io && (io.HResult == ENOSPC || io.Message.Contains("No space left on device", StringComparison.Ordinal)))
                full = io;
        if (full is null) return null;

        string? file = QuotedPath().Match(full.Message) is { Success: true } m ? m.Groups[1].Value : null;
        string dir = file is null ? Environment.CurrentDirectory : Path.GetDirectoryName(Path.GetFullPath(file)) ?? "/";
        string available = Available(dir) is long free ? Bytes.Format(free) : "an unknown amount";
        string needed = (full.Data[BytesNeededKey] ?? e.Data[BytesNeededKey]) is long n ? Bytes.Format(n)
            : PreviousSiblingBytes(dir) is long s ? $"about {Bytes.Format(s)} (the size of the previous checkpoint)"
            : $"more than the {available} available";
        return $"no space left on the device while writing {(file is null ? $"in '{dir}'" : $"'{file}'")}: needs {needed}, " +
               $"{available} available in '{dir}'. Free space there or write to another disk (e.g. another --save-dir); earlier files were left intact.";
    }

    [GeneratedRegex(@"'(/[^']*)'", RegexOptions.CultureInvariant)]
    private static partial Regex QuotedPath();

    private static long? Available(string dir)
    {
        try
        {
            string existing = dir;
            while (!Directory.Exists(existing) && Path.GetDirectoryName(existing) is string parent) existing = parent;
            return new DriveInfo(existing).AvailableFreeSpace;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    // A checkpoint (step-NNNNNNNN with a manifest) is written into a fresh folder beside the previous ones: the newest one's size is the need.
    private static long? PreviousSiblingBytes(string dir)
    {
        try
        {
            string? parent = Path.GetDirectoryName(dir);
            if (parent is null || !Directory.Exists(parent)) return null;
            var sibling = new DirectoryInfo(parent).GetDirectories()
                .Where(d => d.FullName != dir && d.Name.StartsWith("step-", StringComparison.Ordinal) && File.Exists(Path.Combine(d.FullName, "manifest.json")))
                .OrderByDescending(d => d.LastWriteTimeUtc).FirstOrDefault();
            long bytes = sibling?.EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length) ?? 0;
            return bytes > 0 ? bytes : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
