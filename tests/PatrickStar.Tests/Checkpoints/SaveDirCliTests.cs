using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Checkpoints;

/// <summary>`pstar train --save-dir` / `--resume` / `--no-resume` and the commands that read checkpoints, run in-process on a tiny GPT.</summary>
public class SaveDirCliTests
{
    public SaveDirCliTests() => TorchRuntime.EnsureLoaded();

    private static readonly string[] Tiny =
        ["--layers", "1", "--hidden", "32", "--heads", "2", "--context", "32", "--seq", "16", "--batch", "2", "--eval-interval", "0", "--plain-output", "--device", "cpu"];

    private static (int Code, string Out, string Err) Train(params string[] args) => Pstar(["train", .. Tiny, .. args]);

    private static List<long> Steps(string saveDir) => TrainingCheckpoint.List(saveDir).Select(c => c.Step).ToList();

    [Fact]
    public void ASaveDirOfThisConfigResumesAnotherIsRefusedAndNoResumeMovesThemAside()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "runs");
        var (code, _, err) = Train("--steps", "6", "--save-every", "1", "--save-dir", dir);
        Assert.True(code == 0, err);
        Assert.Equal([4, 5, 6], Steps(dir));

        // Fewer steps than the save dir already holds: refused, nothing deleted (it used to save step 4 and prune it).
        (code, _, err) = Train("--steps", "4", "--save-dir", dir);
        Assert.Equal(1, code);
        Assert.Contains("raise --steps above 6", err);
        Assert.Contains("--no-resume", err);
        Assert.Equal([4, 5, 6], Steps(dir));

        // Another config: refused, naming the difference and the ways out.
        (code, _, err) = Train("--steps", "8", "--lr", "0.002", "--save-dir", dir);
        Assert.Equal(1, code);
        foreach (var part in new[] { "optimizer.params.lr", "--resume", "--no-resume", "new --save-dir" }) Assert.Contains(part, err);
        Assert.Equal([4, 5, 6], Steps(dir));

        // The same config: continues from the newest, and says so.
        (code, var output, err) = Train("--steps", "8", "--save-dir", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains($"Resuming from {Path.Combine(dir, "step-00000006")}", output);
        Assert.Contains("step     7/8", output);
        Assert.DoesNotContain("step     1/8", output);
        Assert.Equal([5, 6, 8], Steps(dir));

        // --no-resume: a fresh run; the earlier checkpoints are moved aside, not deleted.
        (code, output, err) = Train("--steps", "2", "--no-resume", "--save-dir", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("moved the 3 checkpoint(s)", output);
        Assert.Equal([2], Steps(dir));
        string aside = Assert.Single(Directory.GetDirectories(dir, "earlier-*"));
        Assert.Equal([5, 6, 8], Steps(aside));
    }

    [Fact]
    public void ASaveDirInUseIsRefusedBeforeAnyWork()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "runs");
        using (SaveDirLock.Acquire(dir)) // another run holds it (this process: alive)
        {
            var (code, output, err) = Train("--steps", "1", "--save-dir", dir);
            Assert.Equal(1, code);
            Assert.Contains("is in use by another run", err);
            Assert.DoesNotContain("Preparing", output);
        }
    }

    [Fact]
    public void AnUnwritableSaveDirIsRefusedBeforeAnyWork()
    {
        using var tmp = new TempDir();
        string file = tmp.File("a-file", "not a directory");
        var (code, output, err) = Train("--steps", "1", "--save-dir", Path.Combine(file, "runs"));
        Assert.Equal(1, code);
        Assert.Contains("cannot be written", err);
        Assert.DoesNotContain('\n', err.TrimEnd());
        Assert.DoesNotContain("Preparing", output);
    }

    [Fact]
    public void ResumeSavesBesideItsCheckpointRecoversAnInterruptedResaveAndRefusesInitFrom()
    {
        using var tmp = new TempDir();
        string dir = Path.Combine(tmp.Path, "runs");
        var (code, output, err) = Train("--steps", "2", "--save-dir", dir);
        Assert.True(code == 0, err);

        // --resume without --save-dir saves beside the checkpoint it continues (it used to save nothing).
        (code, output, err) = Train("--steps", "3", "--resume", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains($"Checkpoints will be saved to {dir}", output);
        Assert.Equal([2, 3], Steps(dir));

        // A crash between the two renames of a re-save left step-3 as .old-PID beside a complete new copy.
        string step3 = Path.Combine(dir, "step-00000003");
        const int deadPid = int.MaxValue - 1;
        string partial = Path.Combine(dir, $".step-00000003.partial-{deadPid}");
        Directory.CreateDirectory(partial);
        foreach (var f in Directory.GetFiles(step3)) File.Copy(f, Path.Combine(partial, Path.GetFileName(f)));
        Directory.Move(step3, step3 + $".old-{deadPid}");
        (code, output, err) = Train("--steps", "4", "--resume", dir);
        Assert.True(code == 0, err + output);
        Assert.Contains($"Recovered {step3}", output);
        Assert.Contains($"Resumed from {step3} at step 3", output);
        Assert.Equal([2, 3, 4], Steps(dir));

        string weights = tmp.File("w.safetensors", "");
        (code, _, err) = Train("--steps", "5", "--resume", dir, "--init-from", weights);
        Assert.Equal(1, code);
        Assert.Contains("give only one", err);
    }

    [Fact]
    public void ExportEvalAndGenerateRefuseACorruptedCheckpoint()
    {
        using var tmp = new TempDir();
        manual_seed(3);
        using (var model = new GptModel(new GptConfig(GptConfig.Gpt2VocabSize, 32, 1, 32, 2)))
            HuggingFaceGpt2Tests.WriteCheckpoint(Path.Combine(tmp.Path, "run", "step-00000010"), model);
        string file = Path.Combine(tmp.Path, "run", "step-00000010", "rank-00000-of-00002.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        for (int i = 0; i < 4096; i++) bytes[bytes.Length / 2 + i] ^= 0x55; // 4 KB flipped inside the weights, same size
        File.WriteAllBytes(file, bytes);
        string run = Path.Combine(tmp.Path, "run"), output = Path.Combine(tmp.Path, "hf", "model.safetensors");
        string text = tmp.File("t.txt", "The cat sat on the mat. The dog ran to the park and back again. ");
        foreach (var args in new[]
                 {
                     new[] { "export", run, "--out", output },
                     ["eval", "--checkpoint", run, "--data", text, "--seq", "8"],
                     ["generate", "--checkpoint", run, "--prompt", "Hello", "--max-tokens", "2"],
                 })
        {
            var (code, _, err) = Pstar(args);
            Assert.Equal(1, code);
            Assert.Contains($"{file} is corrupted", err);
        }
        Assert.False(File.Exists(output));
    }
}
