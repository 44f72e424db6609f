using System.Text.Json;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar train --disk-dir`: the disk tier starts with a message, reports its traffic, leaves no files; a bad directory is one line and exit 1.</summary>
public class DiskTierCliTests
{
    private static string Data(TempDir dir) =>
        dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));

    [Fact]
    public void TrainWithADiskDirSaysHowItDoesIoReportsTrafficAndRemovesItsFiles()
    {
        using var dir = new TempDir();
        string disk = Path.Combine(dir.Path, "disk");
        Directory.CreateDirectory(disk);
        string metrics = Path.Combine(dir.Path, "m.jsonl");
        // gpt2-tiny is one 13 MB chunk per list, so the host (which must hold one chunk index of every list while packing)
        // holds it all: the engine tests force chunks through disk; here the CLI path is checked.
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--data", Data(dir), "--steps", "2", "--batch", "2", "--seq", "32",
            "--engine", "chunked", "--disk-dir", disk, "--eval-interval", "0", "--metrics", metrics, "--plain-output");
        Assert.True(code == 0, err);
        Assert.Matches(@"disk tier: (O_DIRECT|buffered) I/O in ", err);
        using var last = JsonDocument.Parse(File.ReadAllLines(metrics)[^1]);
        foreach (var key in new[] { "disk_bytes_read", "disk_bytes_written", "disk_read_seconds", "disk_write_seconds", "disk_wait_seconds", "disk_overlapped_fraction" })
            Assert.True(last.RootElement.TryGetProperty(key, out _), $"the metrics lack {key}");
        Assert.Empty(Directory.EnumerateFileSystemEntries(disk));
    }

    [Fact]
    public void AMissingDiskDirIsRefusedInOneLine()
    {
        using var dir = new TempDir();
        string missing = Path.Combine(dir.Path, "no-such-dir");
        var (code, _, err) = Pstar("train", "--model", "gpt2-tiny", "--data", Data(dir), "--steps", "1", "--batch", "2", "--seq", "32",
            "--engine", "chunked", "--disk-dir", missing, "--eval-interval", "0", "--plain-output");
        Assert.Equal(1, code);
        Assert.Equal($"error: disk_dir '{missing}' does not exist; create it or set --disk-dir / disk_dir to an existing directory.", err.Trim());
    }
}
