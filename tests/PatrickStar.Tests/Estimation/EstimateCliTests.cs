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
        var (code, stdout, _) = Pstar("estimate", "--model", "gpt2-mini", "--device-memory", "2GiB", "--host-memory", "4GiB", "--batch", "4", "--seq", "128");
        Assert.Equal(0, code);
        Assert.Contains("Fits.", stdout);
        Assert.Contains("momentum", stdout);
        Assert.Contains("utilisation", stdout);
    }

    [Fact]
    public void ARunThatDoesNotFitExitsWithItsCodeAndTheKnobs()
    {
        var (code, stdout, _) = Pstar("estimate", "--model", "gpt2", "--device-memory", "1GiB", "--host-memory", "1GiB", "--batch", "8", "--seq", "256");
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
    public void TrainRefusesARunThatCannotFit()
    {
        var (code, _, err) = Pstar("train", "--model", "gpt2-tiny", "--engine", "chunked", "--device-memory", "64KiB", "--host-memory", "1GiB",
            "--steps", "1", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("does not fit", err);
        Assert.Contains("device needs", err);
    }
}
