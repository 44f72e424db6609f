using System.Diagnostics;
using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Cli.Commands;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Distributed;

/// <summary>
/// `pstar launch -n 2 -- train --engine chunked` against `pstar train` alone with the same global batch: the
/// built CLI under mpirun, each job killed with its process tree if it overruns its bound.
/// </summary>
public class DataParallelMpiTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(120);

    // A tiny GPT; the chunk size is the embedding's (50257 x 32), so the blocks fill a second chunk and each rank owns one.
    private static readonly string[] Common = // "3" is the step count (the resume run replaces it)
    [
        "--engine", "chunked", "--layers", "2", "--hidden", "32", "--heads", "4", "--context", "32", "--seq", "32", "--steps", "3",
        "--eval-interval", "0", "--chunk-size", "1608224", "--device", "cpu", "--device-memory", "256MiB", "--host-memory", "2GiB",
        "--threads", "1", "--plain-output", "--lr", "3e-3",
    ];

    private static (int Code, string Output, TimeSpan Took) Pstar(string workDir, IDictionary<string, string>? env, params string[] args) =>
        MpiTests.RunPstar(workDir, env, args);

    private static List<double> Losses(string metrics) =>
        File.ReadAllLines(metrics).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();

    /// <summary>Every param/NAME of a checkpoint, whichever rank's file holds it.</summary>
    private static Dictionary<string, float[]> Parameters(string saveDir)
    {
        var dir = CheckpointParameters.ResolveDirectory(saveDir);
        var result = new Dictionary<string, float[]>();
        foreach (var file in Directory.GetFiles(dir, "rank-*.safetensors"))
        {
            using var reader = SafetensorsReader.Open(file);
            foreach (var e in reader.Entries.Where(e => e.Name.StartsWith("param/")))
            {
                using var t = reader.Read(e.Name, ScalarType.Float32);
                result.Add(e.Name, t.data<float>().ToArray());
            }
        }
        return result;
    }

    [MpiFact]
    public void TwoRanksTrainLikeOneRankWithTheGlobalBatch()
    {
        using var dir = new TempDir();
        var (code, text, _) = Pstar(dir.Path, null, ["train", .. Common, "--batch", "4", "--metrics", "single.jsonl", "--save-dir", "single"]);
        Assert.True(code == 0, text);
        var singleLosses = Losses(Path.Combine(dir.Path, "single.jsonl"));
        var singleParams = Parameters(Path.Combine(dir.Path, "single"));
        foreach (var mode in new[] { "gather", "broadcast" })
        {
            var (c, t, took) = Pstar(dir.Path, null, ["launch", "-n", "2", "--", "train", .. Common, "--batch", "2", "--dp-mode", mode,
                "--metrics", $"{mode}.jsonl", "--save-dir", mode]);
            Assert.True(c == 0, t);
            Assert.Contains("[rank 1] Data parallel: rank 1 of 2", t);
            // The start-up line gives the job's batch: 2 ranks x micro-batch 2 = the single run's 4 sequences of 32 tokens.
            Assert.Contains("Global batch 4 sequences (2 x 1 accumulation x 2 ranks) x 32 tokens = 128 tokens/step", t);
            var losses = Losses(Path.Combine(dir.Path, $"{mode}.jsonl"));
            Assert.Equal(singleLosses.Count, losses.Count);
            for (int s = 0; s < losses.Count; s++)
                Assert.True(Math.Abs(losses[s] - singleLosses[s]) <= 1e-5 * singleLosses[s], $"{mode} step {s + 1}: {losses[s]} vs {singleLosses[s]} alone");
            var ckpt = CheckpointParameters.ResolveDirectory(Path.Combine(dir.Path, mode));
            Assert.True(File.Exists(Path.Combine(ckpt, "rank-00000-of-00002.safetensors")) && File.Exists(Path.Combine(ckpt, "rank-00001-of-00002.safetensors")));
            var parameters = Parameters(Path.Combine(dir.Path, mode));
            Assert.Equal(singleParams.Keys.Order(), parameters.Keys.Order());
            double diff = 0, norm = 0;
            foreach (var (name, values) in parameters)
                for (int i = 0; i < values.Length; i++)
                {
                    diff += Math.Pow(values[i] - singleParams[name][i], 2);
                    norm += Math.Pow(singleParams[name][i], 2);
                }
            output.WriteLine($"{mode}: losses {string.Join(", ", losses)}; parameters differ by {Math.Sqrt(diff / norm):E2} (relative L2); {took.TotalSeconds:0.0} s");
            Assert.True(Math.Sqrt(diff / norm) <= 1e-5, $"{mode}: parameters differ by {Math.Sqrt(diff / norm):E3}");
        }
        // A two-rank checkpoint resumes on one rank (re-sharded by parameter name).
        var (rc, rt, _) = Pstar(dir.Path, null, ["train", .. Common.Select(x => x == "3" ? "4" : x), "--batch", "4", "--resume", "gather"]);
        Assert.True(rc == 0, rt);
        Assert.Contains("Resumed from", rt);
    }

    [MpiFact]
    public void ARankThatFailsEndsTheJobAndIsNamed()
    {
        using var dir = new TempDir();
        var env = new Dictionary<string, string> { ["PSTAR_FAIL_RANK"] = "1", ["PSTAR_FAIL_STEP"] = "2" };
        var (code, text, took) = Pstar(dir.Path, env, ["launch", "-n", "2", "--", "train", .. Common, "--batch", "2"]);
        output.WriteLine($"exit {code} after {took.TotalSeconds:0.0} s");
        Assert.NotEqual(0, code);
        Assert.Contains("[rank 1] error: rank 1 of 2 failed: rank 1 failed on purpose at step 2", text);
        Assert.DoesNotMatch(@"(?m)^(\[rank \d\] )?\s+at ", text); // one line, no stack trace (that goes to a crash log)
        // Open MPI's own "MPI_ABORT was invoked" banner is not asserted: the aborting process can die before it is flushed.
        Assert.DoesNotContain("steps                │ 3 of 3", text); // rank 0 was stopped, not left to finish
        Assert.True(took < Bound);
    }

    [MpiFact]
    public void ARankKilledMidTrainingEndsTheJobAndIsNamed()
    {
        using var dir = new TempDir();
        var env = new Dictionary<string, string> { ["PSTAR_FAIL_RANK"] = "1", ["PSTAR_FAIL_STEP"] = "2", ["PSTAR_FAIL_MODE"] = "kill" };
        var (code, text, took) = Pstar(dir.Path, env, ["launch", "-n", "2", "--", "train", .. Common, "--batch", "2"]);
        output.WriteLine($"exit {code} after {took.TotalSeconds:0.0} s");
        Assert.NotEqual(0, code);
        // Killed, the rank says nothing: mpirun notices the process's death, names the rank and ends the job.
        Assert.Matches(@"rank 1 .*(exited on signal 9|Killed)", text);
        Assert.DoesNotContain("steps                │ 3 of 3", text);
        Assert.True(took < Bound);
    }
}
