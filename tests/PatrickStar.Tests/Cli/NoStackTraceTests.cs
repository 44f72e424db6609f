using System.Text.RegularExpressions;
using PatrickStar.Cli.Commands;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Profiling;
using Xunit;
using Xunit.Abstractions;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Cli;

/// <summary>
/// Every class of bad input that once crashed with a .NET stack trace, driven through the CLI: one line that names
/// the problem and the fix, a non-zero exit, and nothing else on stderr.
/// </summary>
public class NoStackTraceTests(ITestOutputHelper output)
{
    private static readonly string[] TinyTrain =
        ["--model", "gpt2-tiny", "--seq", "16", "--batch", "1", "--steps", "2", "--eval-interval", "0", "--threads", "1", "--plain-output"];

    private const string Text = "The cat sat on the mat. The dog ran to the park and back again. Once upon a time a small model read a text. ";

    /// <summary>Runs pstar in-process; asserts a non-zero exit and exactly one stderr line holding every fragment.</summary>
    private string AssertOneLine(string[] args, params string[] fragments)
    {
        var (code, stdout, err) = Pstar(args);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => !l.StartsWith("note:", StringComparison.Ordinal)).ToList();
        string all = $"exit {code}\nstdout:\n{stdout}\nstderr:\n{err}";
        Assert.True(code != 0, all);
        Assert.True(lines.Count == 1, $"expected one error line:\n{all}");
        Assert.StartsWith("error: ", lines[0]);
        foreach (var f in fragments) Assert.True(lines[0].Contains(f, StringComparison.Ordinal), $"'{f}' missing from: {lines[0]}");
        Assert.DoesNotMatch(new Regex(@"^\s+at |\(Parameter '", RegexOptions.Multiline), stdout + err);
        output.WriteLine(lines[0]);
        return lines[0];
    }

    [Fact]
    public void ADeviceAsDataIsRefused() =>
        AssertOneLine(["train", .. TinyTrain, "--data", "/dev/zero"], "'/dev/zero' is not a regular file", "give a text file");

    [Fact]
    public void ThreadsAboveTheCoreCountAreRefused() =>
        AssertOneLine(["train", .. TinyTrain[..^3], "--plain-output", "--threads", "100000"], "threads is 100000", $"the {Environment.ProcessorCount} cores");

    [Fact]
    public void AProfileWithAnAbsurdChunkCountIsRefusedBeforeDrawing()
    {
        using var dir = new TempDir();
        string profile = Path.Combine(dir.Path, "profile.json");
        SyntheticProfile.Build().Save(profile);
        File.WriteAllText(profile, Regex.Replace(File.ReadAllText(profile), "\"chunk_count\":\\d+", "\"chunk_count\":1000000000"));
        AssertOneLine(["plot", profile, "--out", Path.Combine(dir.Path, "fig")], "run.chunk_count 1000000000 is outside", "record it again");
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "fig")));
    }

    [Fact]
    public void AFullDiskIsOneLineWithTheBytes()
    {
        // /dev/full fails every write with ENOSPC, as a full disk does (Linux has it everywhere).
        using var dir = new TempDir();
        AssertOneLine(["train", .. TinyTrain, "--data", TextFile(dir), "--metrics", "/dev/full"], "no space left on the device", "'/dev", "available", "Free space");
    }

    [Fact]
    public void AFullDiskDuringASaveNamesTheFolderAndTheBytesNeededAndAvailable()
    {
        using var dir = new TempDir();
        string previous = Path.Combine(dir.Path, "step-00000002");
        Directory.CreateDirectory(previous);
        File.WriteAllBytes(Path.Combine(previous, "rank-00000-of-00001.safetensors"), new byte[3 << 20]);
        File.WriteAllText(Path.Combine(previous, "manifest.json"), "{}");
        string partial = Path.Combine(dir.Path, ".step-00000004.partial-0");
        Directory.CreateDirectory(partial);
        // What .NET throws for ENOSPC (HResult is the errno on Unix), wrapped as a save might wrap it.
        var full = new IOException($"No space left on device : '{Path.Combine(partial, "rank-00000-of-00001.safetensors")}'", 28);
        var (line, user) = CommandErrors.Describe(new InvalidOperationException("save failed", full));
        Assert.True(user);
        Assert.DoesNotContain('\n', line);
        Assert.Matches(@"^error: no space left on the device while writing '.*\.step-00000004\.partial-0/rank-00000-of-00001\.safetensors': " +
                       @"needs about 3\.0 MiB \(the size of the previous checkpoint\), [0-9.]+ [KMGT]?i?B available in '.*\.step-00000004\.partial-0'\.", line);
    }

    [Fact]
    public void AnUnparsableNumberNamesTheFlagTheValueAndTheForm() =>
        AssertOneLine(["train", "--lr", "abc"], "--lr 'abc' is not valid: --lr takes a number, e.g. 3e-4", "pstar train --help");

    [Fact]
    public void AChunkSmallerThanATensorNamesTheFlagAndTheSize()
    {
        using var dir = new TempDir();
        AssertOneLine(["train", .. TinyTrain, "--data", TextFile(dir), "--engine", "chunked", "--chunk-size", "1000", "--device-memory", "256MiB", "--host-memory", "1GiB"],
            "more than the chunk size of 1000 elements", "--chunk-size (chunk_size) to at least");
    }

    [Fact]
    public void LaunchWithABadFlagIsRefusedBeforeAnyRankStarts() =>
        AssertOneLine(["launch", "-n", "2", "--", "train", "--no-such-flag"], "'--no-such-flag'", "pstar train --help");

    [Theory]
    [InlineData("metrics")]
    [InlineData("profile")]
    [InlineData("export")]
    [InlineData("plot")]
    [InlineData("bench")]
    public void AnOutputPathThatCannotBeWrittenIsRefusedBeforeAnyWork(string which)
    {
        using var dir = new TempDir();
        // A path below a regular file cannot be created by anyone (root included, unlike a read-only folder).
        string blocker = dir.File("blocker", "x");
        string below = Path.Combine(blocker, "out");
        string profile = Path.Combine(dir.Path, "profile.json");
        SyntheticProfile.Build().Save(profile);
        string[] args = which switch
        {
            "metrics" => ["train", .. TinyTrain, "--metrics", Path.Combine(below, "m.jsonl")],
            "profile" => ["train", .. TinyTrain, "--engine", "chunked", "--profile", Path.Combine(below, "p.json")],
            "export" => ["export", dir.Path, "--out", Path.Combine(below, "model.safetensors")],
            "plot" => ["plot", profile, "--out", below],
            _ => ["bench", "--report", below],
        };
        AssertOneLine(args, $"'{below}", "is a file", "choose another path");
    }

    [Fact]
    public void InitFromWithAPresetIsRefused()
    {
        using var dir = new TempDir();
        AssertOneLine(["train", .. TinyTrain, "--init-from", TinyWeights(dir, withConfig: true)],
            "--model and --init-from both choose the model", "drop --model");
    }

    [Fact]
    public void InitFromWithoutConfigJsonTakesTheSizesFromTheFlagsAndTheTensors()
    {
        using var dir = new TempDir();
        string weights = TinyWeights(dir, withConfig: false);
        string[] train = ["train", "--seq", "16", "--batch", "1", "--steps", "1", "--eval-interval", "0", "--threads", "1", "--plain-output",
            "--data", TextFile(dir), "--init-from", weights];
        AssertOneLine(train, "--heads N");
        var (code, _, err) = Pstar([.. train, "--heads", "2"]);
        Assert.True(code == 0, err);
    }

    [Fact]
    public void AModelWithNaNWeightsIsRefusedByEvalAndGenerate()
    {
        using var dir = new TempDir();
        string weights = TinyWeights(dir, withConfig: true, poison: true);
        AssertOneLine(["eval", "--init-from", weights, "--data", TextFile(dir), "--seq", "16"], "NaN or infinite", "c_attn.weight'");
        AssertOneLine(["generate", "--init-from", weights, "--prompt", "The cat"], "NaN or infinite", "use an earlier checkpoint");
    }

    [Fact]
    public void AnUnexpectedErrorIsOneLineNamingACrashLogWithTheFullReport()
    {
        var old = Console.Error;
        using var err = new StringWriter();
        Console.SetError(err);
        int code;
        try
        {
            code = CommandErrors.Run(() => throw new InvalidOperationException("boom\nsecond line"));
        }
        finally
        {
            Console.SetError(old);
        }
        Assert.Equal(CommandErrors.InternalError, code);
        string line = err.ToString().TrimEnd();
        Assert.DoesNotContain('\n', line);
        var log = Regex.Match(line, @"the full report is in (\S+);");
        Assert.True(log.Success, line);
        Assert.StartsWith("internal error: boom (InvalidOperationException;", line);
        string report = File.ReadAllText(log.Groups[1].Value);
        Assert.Contains("second line", report);
        Assert.Contains(nameof(AnUnexpectedErrorIsOneLineNamingACrashLogWithTheFullReport), report); // the stack trace
    }

    private static string TextFile(TempDir dir) => dir.File("data.txt", string.Concat(Enumerable.Repeat(Text, 40)));

    private static string TinyWeights(TempDir dir, bool withConfig, bool poison = false)
    {
        TorchRuntime.EnsureLoaded();
        manual_seed(5);
        using var model = new GptModel(new GptConfig(VocabSize: GptConfig.Gpt2VocabSize, ContextLength: 32, Layers: 1, Hidden: 32, Heads: 2));
        if (poison)
            using (no_grad())
                model.named_parameters().First(p => p.name.EndsWith("c_attn.weight")).parameter[0, 0] = float.NaN;
        string weights = Path.Combine(dir.Path, "m", "model.safetensors");
        HuggingFaceGpt2.Export(model, weights, ScalarType.Float32);
        if (!withConfig) File.Delete(HuggingFaceGpt2.ConfigPathBeside(weights));
        return weights;
    }
}
