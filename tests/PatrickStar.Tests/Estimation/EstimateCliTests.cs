using PatrickStar.Cli;
using PatrickStar.Cli.Commands;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Estimation;

/// <summary>`pstar estimate` and `pstar train` refusing, in-process.</summary>
public class EstimateCliTests
{
    [Fact]
    public void AFittingRunExitsZero()
    {
        var (code, stdout, _) = Pstar("estimate", "--model", "gpt2-mini", "--engine", "chunked", "--device-memory", "2GiB", "--host-memory", "4GiB", "--batch", "4", "--seq", "128");
        Assert.Equal(0, code);
        Assert.Contains("Fits.", stdout);
        Assert.Contains("momentum", stdout);
        Assert.Contains("utilisation", stdout);
    }

    [Fact]
    public void ARunThatDoesNotFitExitsWithItsCodeAndTheKnobs()
    {
        var (code, stdout, _) = Pstar("estimate", "--model", "gpt2", "--engine", "chunked", "--device-memory", "1GiB", "--host-memory", "1GiB", "--batch", "8", "--seq", "256");
        Assert.Equal(EstimateCommand.DoesNotFit, code);
        Assert.Contains("Does not fit.", stdout);
        Assert.Contains("--host-memory", stdout);
        Assert.Contains("--device-memory", stdout);
        Assert.Contains("short", stdout);
    }

    [Fact]
    public void JsonOutputCarriesTheVerdict()
    {
        var (code, stdout, _) = Pstar("estimate", "--layers", "2", "--hidden", "64", "--heads", "4", "--context", "64", "--vocab", "100",
            "--device-memory", "512MiB", "--host-memory", "512MiB", "--engine", "plain", "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("fits").GetBoolean());
        Assert.Equal("plain", doc.RootElement.GetProperty("engine").GetString());
    }

    [Fact]
    public void TheDefaultsAreTrainsAndTheDeviceFigureIsTheSameInEveryTable()
    {
        // As `pstar train`: the plain engine, gpt2-mini, and on a CPU device the machine's available memory as the budget.
        var (code, stdout, _) = Pstar("estimate", "--device", "cpu", "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.Equal("plain", doc.RootElement.GetProperty("engine").GetString());
        long available = PatrickStar.Profiling.MemoryMeter.AvailableHostMemory()!.Value;
        Assert.InRange(doc.RootElement.GetProperty("tiers")[0].GetProperty("available").GetInt64(), available - (512L << 20), available + (512L << 20));

        // Does not fit: the device need in the tiers, the device-memory suggestion and its "device needs" are one figure.
        var (no, text, _) = Pstar("estimate", "--model", "gpt2-tiny", "--engine", "chunked", "--batch", "2", "--seq", "64",
            "--device-memory", "48MiB", "--host-memory", "1GiB");
        Assert.Equal(EstimateCommand.DoesNotFit, no);
        var needed = System.Text.RegularExpressions.Regex.Match(text, @"device\s*│\s*([0-9.]+ MiB)").Groups[1].Value;
        var suggested = System.Text.RegularExpressions.Regex.Match(text, @"--device-memory\s+(\d+)MiB").Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(needed), text);
        Assert.Equal($"{suggested}.0 MiB", needed);
        Assert.Contains($"device memory {needed}", text);
    }

    [Fact]
    public void BudgetsBeyondThePhysicalMemoryAreRefusedInOneLine()
    {
        long total = PatrickStar.Profiling.MemoryMeter.PhysicalMemory()!.Value;
        var (code, stdout, err) = Pstar("estimate", "--model", "gpt2-tiny", "--engine", "chunked", "--device", "cpu",
            "--device-memory", $"{(total >> 20) / 2 + 1}MiB", "--host-memory", $"{(total >> 20) / 2 + 1}MiB");
        Assert.Equal(1, code);
        Assert.DoesNotContain("Fits", stdout);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("physical memory", err);
        Assert.Contains("MemTotal", err);
    }

    [Fact]
    public void TrainRefusesARunThatCannotFit()
    {
        var (code, _, err) = Pstar("train", "--model", "gpt2-tiny", "--engine", "chunked", "--device-memory", "64KiB", "--host-memory", "1GiB",
            "--steps", "1", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("does not fit", err);
        Assert.Contains("device needs", err);
    }
}
