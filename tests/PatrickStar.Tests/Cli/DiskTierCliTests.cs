using System.Text.Json;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar train --disk-dir`: the disk tier starts with a message, moves chunks, leaves no files; a bad directory is one line and exit 1.</summary>
public class DiskTierCliTests
{
    private static string Data(TempDir dir) =>
        dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));

    [Fact]
    public void TrainWithADiskDirMovesChunksThroughItAndRemovesItsFiles()
    {
        using var dir = new TempDir();
        string disk = Path.Combine(dir.Path, "disk");
        Directory.CreateDirectory(disk);
        string metrics = Path.Combine(dir.Path, "m.jsonl");
        // gpt2-tiny's embedding makes 13 MB chunks: 64 MiB of host holds far less than its ~100 MB of model data.
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--data", Data(dir), "--steps", "2", "--batch", "2", "--seq", "32",
            "--engine", "chunked", "--host-memory", "64MiB", "--disk-dir", disk, "--eval-interval", "0", "--metrics", metrics, "--plain-output");
        Assert.True(code == 0, err);
        Assert.Matches(@"disk tier: (O_DIRECT|buffered) I/O in ", err);
        using var last = JsonDocument.Parse(File.ReadAllLines(metrics)[^1]);
        Assert.True(last.RootElement.GetProperty("disk_read_bytes").GetDouble() > 0, File.ReadAllLines(metrics)[^1]);
        Assert.True(last.RootElement.GetProperty("disk_write_bytes").GetDouble() > 0);
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
