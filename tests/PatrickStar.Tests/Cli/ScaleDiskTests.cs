using System.Text.Json.Nodes;
using PatrickStar.Cli.Benchmarks;
using PatrickStar.Config;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Cli;

/// <summary>`pstar bench --parts scale --disk-dir DIR --disk-memory SIZE`: the extra search's trial configs and the flags' checks.</summary>
public class ScaleDiskTests
{
    private static readonly ScaleBenchmark.Budgets WithDisk = new(1L << 30, 2L << 30, "/nvme/pstar", 64L << 30);

    [Fact]
    public void TheDiskSearchComesBesideDynamicOnlyWithADiskBudget()
    {
        Assert.Equal(new[] { "plain", "static", "dynamic", "dynamic+disk" }, ScaleBenchmark.Policies(WithDisk));
        Assert.Equal(new[] { "plain", "static", "dynamic" }, ScaleBenchmark.Policies(WithDisk with { DiskDir = null }));
    }

    [Fact]
    public void TheDiskTrialIsTheDynamicTrialPlusTheDiskKeys()
    {
        var disk = JsonNode.Parse(ScaleBenchmark.TrialJson(ScaleBenchmark.DiskPolicy, 5, WithDisk, 256, 4, 64, Precision.Fp32))!.AsObject();
        var dynamic = JsonNode.Parse(ScaleBenchmark.TrialJson("dynamic", 5, WithDisk, 256, 4, 64, Precision.Fp32))!.AsObject();
        Assert.Equal("/nvme/pstar", (string?)disk["disk_dir"]);
        Assert.Equal(64L << 30, (long)disk["disk_memory"]!);
        Assert.Null(dynamic["disk_dir"]);
        Assert.Null(dynamic["disk_memory"]);
        foreach (var trial in new[] { disk, dynamic })
        {
            trial.Remove("disk_dir");
            trial.Remove("disk_memory");
        }
        Assert.True(JsonNode.DeepEquals(dynamic, disk), $"{dynamic}\n{disk}");
        // The budgets and the engine the disk tier needs: dynamic placement of the chunk engine.
        var config = ConfigLoader.Parse(dynamic.ToJsonString(), "trial.json");
        Assert.Equal(("chunked", ChunkPlacement.Dynamic, 1L << 30, 2L << 30, 5),
            (config.Engine, config.Chunks.Placement, config.Chunks.DeviceMemory, config.Chunks.HostMemory, config.Model.Layers));
    }

    [Fact]
    public void TheReportPutsTheLargestModelsWithAndWithoutDiskSideBySide()
    {
        var outcomes = new List<ScaleBenchmark.Outcome> { new("plain", 2, 100), new("static", 3, 150), new("dynamic", 4, 200), new("dynamic+disk", 12, 700) };
        Assert.Equal("with a 64.0 GiB disk tier: 12 layers, 700 parameters (3.50x); without: 4 layers, 200 parameters (dynamic placement both).",
            ScalePart.DiskNote(outcomes, WithDisk));
        Assert.Null(ScalePart.DiskNote(outcomes.Take(3).ToList(), WithDisk with { DiskMemory = null }));
    }

    [Fact]
    public void DiskFlagsAreCheckedBeforeAnyWork()
    {
        using var dir = new TempDir();
        string report = Path.Combine(dir.Path, "report");
        // Each case would fail fast even if its check were missing (the optimizer part, or --hidden 0): no scale search starts.
        var (code, _, err) = Pstar("bench", "--parts", "optimizer", "--disk-dir", dir.Path, "--report", report);
        Assert.Equal(1, code);
        Assert.Equal("error: --disk-dir and --disk-memory go together: give the disk tier's folder and its budget, or neither.", err.Trim());
        (code, _, err) = Pstar("bench", "--parts", "optimizer", "--disk-dir", dir.Path, "--disk-memory", "1GiB", "--report", report);
        Assert.Equal(1, code);
        Assert.Contains("--disk-dir and --disk-memory are for the scale part", err);
        (code, _, err) = Pstar("bench", "--parts", "scale", "--disk-dir", Path.Combine(dir.Path, "none"), "--disk-memory", "1GiB", "--hidden", "0", "--report", report);
        Assert.Equal(1, code);
        Assert.Contains("does not exist", err);
        Assert.False(Directory.Exists(report), "nothing may be written for a refused run");
    }
}
