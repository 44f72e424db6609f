using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.HfFolders;

/// <summary>A LLaMA checkpoint exported to a sharded HF folder evaluates from the folder exactly as from the checkpoint, and a run starts from it.</summary>
public class LlamaHfFolderCliTests
{
    public LlamaHfFolderCliTests() => TorchRuntime.EnsureLoaded();

    private static double Loss(params string[] args)
    {
        var (code, output, err) = Pstar(args);
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(output);
        return json.RootElement.GetProperty("loss").GetDouble();
    }

    [Fact]
    public void TrainExportToAFolderThenEvalFromItGivesTheCheckpointsLoss()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 100).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        string run = Path.Combine(dir.Path, "run"), folder = Path.Combine(dir.Path, "hf");
        var (code, _, err) = Pstar("train", "--model", "llama-tiny", "--data", data, "--steps", "1", "--batch", "2", "--seq", "32",
            "--eval-interval", "0", "--plain-output", "--device", "cpu", "--save-dir", run);
        Assert.True(code == 0, err);
        (code, _, err) = Pstar("export", run, "--out", folder, "--max-shard-size", "4MB");
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(folder, HfFolder.IndexFile)), "several shards expected");

        string[] eval = ["eval", "--data", data, "--seq", "16", "--max-batches", "2", "--json", "--device", "cpu"];
        double fromFolder = Loss([.. eval, "--init-from", folder]);
        Assert.Equal(Loss([.. eval, "--checkpoint", run]), fromFolder);

        // A run started from the folder holds its weights: with lr 1e-30 (below fp32 rounding) its checkpoint evaluates exactly as the folder.
        string again = Path.Combine(dir.Path, "again");
        (code, _, err) = Pstar("train", "--init-from", folder, "--data", data, "--steps", "1", "--batch", "2", "--seq", "32", "--lr", "1e-30",
            "--eval-interval", "0", "--plain-output", "--device", "cpu", "--save-dir", again);
        Assert.True(code == 0, err);
        Assert.Equal(fromFolder, Loss([.. eval, "--checkpoint", again]));
    }
}
