using System.Text.Json;
using PatrickStar.Cli;
using Xunit;

namespace PatrickStar.Tests.Cli;

/// <summary>The `pstar` command line, run in-process: bad input gets a clear error, a non-zero exit and no output file.</summary>
public class CliTests
{
    internal static (int Code, string Out, string Err) Pstar(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var output = new StringWriter();
        using var error = new StringWriter();
        Console.SetOut(output);
        Console.SetError(error);
        // Spectre.Console keeps the writer it first saw; give it this call's.
        Spectre.Console.AnsiConsole.Console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(output),
            Interactive = Spectre.Console.InteractionSupport.No,
        });
        Spectre.Console.AnsiConsole.Console.Profile.Width = 200;
        try
        {
            int code = Program.Main(args);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    private static void AssertRefused(TempDir dir, string expected, params string[] args)
    {
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");
        var (code, _, err) = Pstar(args.Concat(new[] { "--metrics", metrics, "--plain-output" }).ToArray());
        Assert.Equal(1, code);
        Assert.Contains(expected, err);
        Assert.False(File.Exists(metrics), "nothing may be written for a refused run");
    }

    [Fact]
    public void MissingDataFileIsRefused()
    {
        using var dir = new TempDir();
        AssertRefused(dir, "missing.txt' does not exist", "train", "--data", Path.Combine(dir.Path, "missing.txt"));
    }

    [Fact]
    public void EmptyDataFileIsRefused()
    {
        using var dir = new TempDir();
        AssertRefused(dir, "is empty", "train", "--data", dir.File("empty.txt", ""));
    }

    [Fact]
    public void DirectoryWithoutTextIsRefused()
    {
        using var dir = new TempDir();
        string sub = Path.Combine(dir.Path, "images");
        Directory.CreateDirectory(sub);
        AssertRefused(dir, "contains no data files", "train", "--data", sub);
    }

    [Fact]
    public void SequenceLongerThanTheModelsContextIsRefused()
    {
        using var dir = new TempDir();
        AssertRefused(dir, "seq_len = 512 exceeds the model's context length n_positions = 256", "train", "--model", "gpt2-mini", "--seq", "512");
    }

    [Fact]
    public void ModelTooLargeForMemoryIsRefusedBeforeAllocation()
    {
        using var dir = new TempDir();
        long before = PatrickStar.Profiling.MemoryMeter.Snapshot().PeakResident;
        AssertRefused(dir, "bytes", "train", "--model", "gpt3-175b", "--seq", "64", "--data", dir.File("a.txt", string.Concat(Enumerable.Repeat("some words to train on. ", 400))));
        var (_, _, err) = Pstar("train", "--model", "gpt3-175b", "--seq", "64", "--data", dir.File("a.txt"));
        Assert.Contains("only", err);
        Assert.Contains("available", err);
        Assert.Contains("174,604,259,328 parameters", err);
        long after = PatrickStar.Profiling.MemoryMeter.Snapshot().PeakResident;
        Assert.True(after - before < 1L << 30, "the refusal must come before the model is allocated");
    }

    [Fact]
    public void ConfigErrorsAreRefusedWithTheKey()
    {
        using var dir = new TempDir();
        string config = dir.File("bad.json", "{ \"optimizer\": { \"type\": \"AdamW\", \"params\": { \"lr\": -1 } } }");
        AssertRefused(dir, "optimizer.params.lr", "train", "--config", config);
        string unknown = dir.File("unknown.json", "{ \"stepz\": 3 }");
        AssertRefused(dir, "stepz", "train", "--config", unknown);
    }

    [Fact]
    public void BadFlagValueIsRefusedByTheParser()
    {
        var (code, _, err) = Pstar("train", "--precision", "fp8");
        Assert.NotEqual(0, code);
        Assert.Contains("fp8", err);
    }

    [Fact]
    public void ModelsListsThePresets()
    {
        var (code, output, _) = Pstar("models");
        Assert.Equal(0, code);
        Assert.Contains("gpt2-xl", output);
        Assert.Contains("124,439,808", output);
    }

    [Fact]
    public void TrainWritesOneMetricsObjectPerStep()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat and looked at bird {i % 7}.\n")));
        string metrics = Path.Combine(dir.Path, "m.jsonl");
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--data", data, "--steps", "3", "--batch", "2", "--seq", "32",
            "--eval-interval", "2", "--metrics", metrics, "--plain-output");
        Assert.True(code == 0, err);
        Assert.Contains("Done", output);
        var lines = File.ReadAllLines(metrics);
        Assert.Equal(3, lines.Length);
        for (int i = 0; i < 3; i++)
        {
            using var json = JsonDocument.Parse(lines[i]);
            var root = json.RootElement;
            Assert.Equal(i + 1, root.GetProperty("step").GetInt32());
            foreach (var key in new[] { "loss", "lr", "tokens_per_second", "tflops", "native_in_use_bytes", "rss_bytes", "grad_norm" })
                Assert.True(root.TryGetProperty(key, out _), $"metrics line {i + 1} lacks {key}");
            Assert.True(root.GetProperty("loss").GetDouble() > 0);
        }
        using var second = JsonDocument.Parse(lines[1]);
        Assert.True(second.RootElement.TryGetProperty("val_loss", out _));
    }

    [Fact]
    public void TrainAcceptsBf16StorageWithFp32Compute()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        string metrics = Path.Combine(dir.Path, "m.jsonl");
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--data", data, "--steps", "1", "--batch", "2", "--seq", "32",
            "--precision", "bf16-fp32", "--metrics", metrics, "--plain-output");
        Assert.True(code == 0, err);
        Assert.Contains("Done", output);
        Assert.Contains("bf16-fp32", output);
        using var json = JsonDocument.Parse(File.ReadAllLines(metrics).Single());
        Assert.True(double.IsFinite(json.RootElement.GetProperty("loss").GetDouble()));
    }
}
