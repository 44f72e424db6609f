using System.Buffers.Binary;
using PatrickStar.Cli.Plotting;
using PatrickStar.Tests.Profiling;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar plot`: four PNG figures of the expected size from a profile; clear errors for bad input.</summary>
public class PlotCliTests
{
    /// <summary>Width and height from a PNG's IHDR chunk (bytes 16..23), after checking the signature.</summary>
    private static (int Width, int Height) PngSize(string path)
    {
        byte[] head = new byte[24];
        using (var f = File.OpenRead(path)) Assert.Equal(24, f.Read(head, 0, 24));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, head[..8]);
        Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(head, 12, 4));
        return (BinaryPrimitives.ReadInt32BigEndian(head.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(head.AsSpan(20)));
    }

    [Fact]
    public void PlotDrawsFourFiguresOfTheExpectedSizeAndTheTierSummary()
    {
        using var dir = new TempDir();
        string profile = Path.Combine(dir.Path, "profile.json");
        SyntheticProfile.Build().Save(profile);
        // PSTAR_TEST_PLOT_DIR keeps the figures for a person to look at.
        string outDir = Environment.GetEnvironmentVariable("PSTAR_TEST_PLOT_DIR") ?? Path.Combine(dir.Path, "figures");

        var (code, output, err) = Pstar("plot", profile, "--out", outDir);
        Assert.True(code == 0, err);
        var expected = new[]
        {
            ("memory.png", ProfilePlots.MemoryWidth, ProfilePlots.MemoryHeight),
            ("chunks.png", ProfilePlots.ChunksWidth, ProfilePlots.ChunksHeight),
            ("loss.png", ProfilePlots.LossWidth, ProfilePlots.LossHeight),
            ("tiers.png", TierPlots.Width, TierPlots.Height),
        };
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(4, lines.Count(l => l.EndsWith(".png", StringComparison.Ordinal)));
        // Then the summary: a line per tier (no disk line for a run without a disk tier).
        Assert.Equal(new[] { "device: at most 8 chunks, 128.0 MiB", "host: at most 31 chunks, 496.0 MiB" }, lines.Where(l => !l.EndsWith(".png", StringComparison.Ordinal)));
        foreach (var (name, width, height) in expected)
        {
            string path = Path.Combine(outDir, name);
            Assert.Contains(path, lines);
            Assert.True(new FileInfo(path).Length > 10_000, $"{name} is suspiciously small");
            Assert.Equal((width, height), PngSize(path));
        }
    }

    [Fact]
    public void LossComesFromMetricsBesideTheProfileWhenItHasNoSteps()
    {
        using var dir = new TempDir();
        var p = SyntheticProfile.Build();
        p.Steps.Clear();
        string profile = Path.Combine(dir.Path, "profile.json");
        p.Save(profile);

        var (code, output, err) = Pstar("plot", profile);
        Assert.Equal(0, code);
        Assert.Contains("loss.png not drawn", err);
        Assert.False(File.Exists(Path.Combine(dir.Path, "loss.png")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "memory.png")));

        dir.File("metrics.jsonl", "{\"step\":1,\"loss\":10.9}\n{\"step\":2,\"loss\":9.1,\"val_loss\":9.4}\n");
        (code, output, err) = Pstar("plot", profile);
        Assert.True(code == 0, err);
        Assert.Contains(Path.Combine(dir.Path, "loss.png"), output);
    }

    [Fact]
    public void BadInputGetsAClearError()
    {
        using var dir = new TempDir();
        var (code, _, err) = Pstar("plot", Path.Combine(dir.Path, "missing.json"));
        Assert.Equal(1, code);
        Assert.Contains("missing.json' does not exist", err);

        string bad = dir.File("bad.json", "{\"format\":\"patrickstar-profile\",\"vers");
        (code, _, err) = Pstar("plot", bad, "--out", Path.Combine(dir.Path, "out"));
        Assert.Equal(1, code);
        Assert.Contains("bad.json' is not valid JSON", err);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")), "nothing may be written for a refused profile");

        string profile = Path.Combine(dir.Path, "profile.json");
        SyntheticProfile.Build().Save(profile);
        string metrics = dir.File("m.jsonl", "{\"step\":1,\"loss\":10.9}\nnot json\n");
        (code, _, err) = Pstar("plot", profile, "--metrics", metrics, "--out", Path.Combine(dir.Path, "out"));
        Assert.Equal(1, code);
        Assert.Contains("m.jsonl', line 2: it is not valid JSON", err);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "out")));
    }

    [Fact]
    public void IterationsSelectsAWindowAndRefusesOneOutsideTheProfile()
    {
        using var dir = new TempDir();
        string profile = Path.Combine(dir.Path, "profile.json");
        SyntheticProfile.Build(iterations: 4).Save(profile);

        string window = Path.Combine(dir.Path, "window");
        var (code, _, err) = Pstar("plot", profile, "--iterations", "1:2", "--out", window);
        Assert.True(code == 0, err);
        Assert.Equal((ProfilePlots.MemoryWidth, ProfilePlots.MemoryHeight), PngSize(Path.Combine(window, "memory.png")));

        (code, _, err) = Pstar("plot", profile, "--iterations", "9", "--out", Path.Combine(dir.Path, "none"));
        Assert.Equal(1, code);
        Assert.Contains("--iterations 9 selects no recorded iteration; the profile has iterations 0 to 3", err);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "none")));

        (code, _, err) = Pstar("plot", profile, "--iterations", "3:1");
        Assert.Equal(1, code);
        Assert.Contains("write N (one iteration) or A:B", err);
    }
}
