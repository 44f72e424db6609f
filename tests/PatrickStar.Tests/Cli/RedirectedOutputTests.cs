using System.Text.RegularExpressions;
using PatrickStar.Cli.Commands;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Distributed;
using Xunit;

namespace PatrickStar.Tests.Cli;

/// <summary>Output to a pipe or a log: every table row on one line (no cell wrapped at 80 columns), run as a child process.</summary>
public class RedirectedOutputTests
{
    /// <summary>A row whose first cell is blank while the row goes on: the continuation of a cell wrapped onto a second line.</summary>
    private static readonly Regex ContinuationRow = new(@"^[│|]\s+[│|]\s*\S", RegexOptions.Multiline);

    [Fact]
    public void ModelsPrintsEveryPresetOnOneLine()
    {
        var (code, output, _) = MpiTests.RunPstar(null, null, "models");
        Assert.True(code == 0, output);
        var lines = output.Split('\n');
        foreach (var p in ModelZoo.Presets)
        {
            // The name, the parameter count and the whole description on the same row.
            Assert.Contains(lines, l => Regex.IsMatch(l, $@"^│ {Regex.Escape(p.Name)}\s+│") && l.Contains($"{p.Config.ParameterCount:N0}")
                                        && l.Contains(p.Description));
        }
        Assert.DoesNotMatch(ContinuationRow, output);
    }

    [Fact]
    public void EstimateTablesKeepEveryCellOnOneLine()
    {
        var (code, output, _) = MpiTests.RunPstar(null, null, "estimate", "--model", "gpt2-mini", "--engine", "chunked", "--device", "cpu",
            "--device-memory", "128MiB", "--host-memory", "1GiB", "--batch", "8", "--seq", "256");
        Assert.True(code == 3, output); // does not fit: the tables and the suggestions are printed
        Assert.Contains(output.Split('\n'), l => l.StartsWith("│ param ") && l.Contains("host, moved to the device per module"));
        Assert.DoesNotMatch(ContinuationRow, output);
    }

    [Fact]
    public void ConfigReferencePrintsEveryKeyOnOneLine()
    {
        var (code, output, _) = MpiTests.RunPstar(null, null, "config");
        Assert.True(code == 0, output);
        Assert.DoesNotMatch(ContinuationRow, output);
    }

    [Fact]
    public void TheStartUpLineGivesTheGlobalBatchOfAJob()
    {
        var c = new TrainingConfig { MicroBatchSize = 2, GradientAccumulationSteps = 3, SequenceLength = 64, Steps = 10 };
        Assert.Equal("Batch 2 x 3 accumulation x 64 tokens = 384 tokens/step, 10 steps.", TrainingDisplay.BatchLine(c, 1));
        Assert.Equal("Global batch 24 sequences (2 x 3 accumulation x 4 ranks) x 64 tokens = 1,536 tokens/step, 10 steps.",
            TrainingDisplay.BatchLine(c, 4));
    }
}
