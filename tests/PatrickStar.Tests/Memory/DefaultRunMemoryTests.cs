using System.Diagnostics;
using System.Text.Json;
using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Training;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Memory;

/// <summary>The default `pstar train` run's peak resident memory against what it measurably needs.</summary>
public class DefaultRunMemoryTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(300);
    private readonly ITestOutputHelper output;

    public DefaultRunMemoryTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    /// <summary>
    /// A real `pstar train` (the default model, data, batch and precision; 2 steps, each validated, so the evaluation
    /// batches are in the peak) in a child process. Its peak RSS must stay within twice the sum of: the model data
    /// (16 B/param), the activation peak of one training pass measured here, and the runtime's own resident memory
    /// (.NET and libtorch loaded, no model) as the child reports it.
    /// </summary>
    [Fact]
    public void DefaultRunPeakResidentMemoryIsAtMostTwiceWhatItNeeds()
    {
        var defaults = new TrainingConfig();
        var gpt = GptRun.ResolveModel(defaults);
        long modelData = gpt.ParameterCount * PlainEngine.BytesPerParameter(defaults.Precision);
        long activations = ActivationMeter.Measure(gpt, defaults.Precision, defaults.MicroBatchSize, defaults.SequenceLength, checkpointing: false).Peak;

        using var dir = new TempDir();
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");
        var (exit, text) = RunTrain("--steps", "2", "--eval-interval", "1", "--metrics", metrics, "--plain-output");
        Assert.True(exit == 0, $"pstar train exited with {exit}:\n{text}");
        using var last = JsonDocument.Parse(File.ReadLines(metrics).Last());
        long peak = last.RootElement.GetProperty("peak_rss_bytes").GetInt64();
        long runtime = last.RootElement.GetProperty("runtime_baseline_rss_bytes").GetInt64();

        long bound = 2 * (modelData + activations + runtime);
        string figures = $"peak RSS {Bytes.Format(peak)}; bound 2 x ({Bytes.Format(modelData)} model data + {Bytes.Format(activations)} " +
                         $"activation peak + {Bytes.Format(runtime)} runtime) = {Bytes.Format(bound)}";
        output.WriteLine(figures);
        Assert.True(peak <= bound, figures);
    }

    internal static (int ExitCode, string Output) RunTrain(params string[] args) => RunTrain(null, args);

    internal static (int ExitCode, string Output) RunTrain(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(PatrickStar.Cli.Program).Assembly.Location);
        start.ArgumentList.Add("train");
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["TERM"] = "dumb";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(Bound))
        {
            process.Kill(entireProcessTree: true);
            return (-1, "timed out\n" + stdout.Result + stderr.Result);
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
