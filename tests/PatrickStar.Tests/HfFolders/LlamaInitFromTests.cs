using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Models;
using PatrickStar.Models.Llama;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;
using static TorchSharp.torch;

namespace PatrickStar.Tests.HfFolders;

/// <summary>`train --init-from` a LLaMA of a shape no preset has, from a folder or from one safetensors file; its checkpoints record the shape.</summary>
public class LlamaInitFromTests
{
    public LlamaInitFromTests() => TorchRuntime.EnsureLoaded();

    // GPT-2's vocabulary (the default tokenizer's); every other setting differs from every preset.
    private static readonly LlamaConfig Odd = new(50257, 64, 2, 48, 6, 3, 100, RopeTheta: 12345, RmsEps: 1e-6, TieEmbeddings: true,
        Scaling: new RopeScaling(4, 1, 4, 32));

    private static double EvalLoss(string data, params string[] source)
    {
        var (code, output, err) = Pstar(["eval", "--data", data, .. source, "--seq", "16", "--max-batches", "2", "--json", "--device", "cpu"]);
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(output);
        return json.RootElement.GetProperty("loss").GetDouble();
    }

    private static void Train(string data, string saveDir, params string[] more)
    {
        var (code, _, err) = Pstar(["train", "--data", data, "--batch", "2", "--seq", "32", "--eval-interval", "0", "--plain-output", "--device", "cpu",
            "--save-dir", saveDir, .. more]);
        Assert.True(code == 0, err);
    }

    [Fact]
    public void AnOddShapedFolderTrainsResumesAndExportsToAFileThatTrainsTheSame()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 100).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        string folder = Path.Combine(dir.Path, "hf");
        manual_seed(7);
        using (var model = new LlamaForCausalLM(Odd)) HuggingFaceLlamaFolder.Export(model, folder, ScalarType.Float32, 5_000_000_000);

        // lr 1e-30 is below fp32 rounding: the run's checkpoint holds the folder's weights, and its config the folder's shape.
        string run = Path.Combine(dir.Path, "run");
        Train(data, run, "--init-from", folder, "--steps", "1", "--lr", "1e-30");
        using (var checkpoint = CheckpointParameters.Open(run)) Assert.Equal(Odd, CausalLmCheckpoints.LlamaConfigOf(checkpoint));
        double folderLoss = EvalLoss(data, "--init-from", folder);
        Assert.Equal(folderLoss, EvalLoss(data, "--checkpoint", run));
        string file = Path.Combine(dir.Path, "file", "model.safetensors");
        var (code, _, err) = Pstar("export", run, "--out", file);
        Assert.True(code == 0, err);
        // The same command with more steps continues the run: its recorded config (the folder's whole shape) matches.
        var (again, output, againErr) = Pstar("train", "--data", data, "--batch", "2", "--seq", "32", "--eval-interval", "0", "--plain-output", "--device", "cpu",
            "--save-dir", run, "--init-from", folder, "--steps", "2", "--lr", "1e-30");
        Assert.True(again == 0, againErr);
        Assert.Contains("Resumed from", output + againErr);
        Assert.True(Directory.Exists(Path.Combine(run, SaveDirectory.StepDirName(2))));

        // Our export format (one file, config.json beside it) and the folder start the same run: one real step each.
        Assert.Equal(folderLoss, EvalLoss(data, "--init-from", file));
        string fromFile = Path.Combine(dir.Path, "from-file"), fromFolder = Path.Combine(dir.Path, "from-folder");
        Train(data, fromFile, "--init-from", file, "--steps", "1");
        Train(data, fromFolder, "--init-from", folder, "--steps", "1");
        Assert.Equal(EvalLoss(data, "--checkpoint", fromFolder), EvalLoss(data, "--checkpoint", fromFile));
    }

    [Fact]
    public void ALlamaFileWithoutItsConfigIsRefusedInOneLine()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "model.safetensors");
        manual_seed(7);
        using (var model = new LlamaForCausalLM(Odd with { Layers = 1 }))
            SafetensorsWriter.Save(file, model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
        string data = dir.File("story.txt", "the cat sat on the mat.\n");
        var (code, _, err) = Pstar("train", "--init-from", file, "--data", data, "--steps", "1", "--plain-output", "--device", "cpu");
        Assert.NotEqual(0, code);
        Assert.Contains("config.json", err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("error: ", err.Trim());
    }
}
