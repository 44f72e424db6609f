using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;

namespace PatrickStar.Tests.Checkpoints;

/// <summary>Damaged checkpoints are refused with one line naming the file and the key, before anything is loaded.</summary>
public sealed class CheckpointDamageTests : IDisposable
{
    private readonly TempDir root = new();
    private readonly string good;

    public CheckpointDamageTests()
    {
        TorchRuntime.EnsureLoaded();
        var config = TrainingHarness.Config(steps: 2);
        using var run = GptRun.Create(config, TrainingHarness.CyclicData());
        run.Trainer.Run();
        good = run.SaveCheckpoint(Path.Combine(root.Path, "good"));
    }

    public void Dispose() => root.Dispose();

    /// <summary>A copy of the good checkpoint with its state edited; <paramref name="rehash"/> updates the manifest to match, as a consistent but wrong state would.</summary>
    private string WithState(Action<JsonObject> edit, bool rehash)
    {
        string dir = Path.Combine(root.Path, "bad-" + Guid.NewGuid().ToString("N")[..8], "step-00000002");
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(good)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string statePath = Path.Combine(dir, TrainingCheckpoint.StateName);
        var state = (JsonObject)JsonNode.Parse(File.ReadAllText(statePath))!;
        edit(state);
        File.WriteAllText(statePath, state.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })); // as saved: same size
        if (rehash)
        {
            string manifestPath = Path.Combine(dir, CheckpointParameters.ManifestName);
            var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
            foreach (var check in manifest["file_checks"]!.AsArray())
            {
                string file = Path.Combine(dir, check!["name"]!.GetValue<string>());
                check["bytes"] = new FileInfo(file).Length;
                check["sha256"] = CheckpointManifest.Sha256(file);
            }
            File.WriteAllText(manifestPath, manifest.ToJsonString());
        }
        return dir;
    }

    private static string Refused(string dir)
    {
        var e = Assert.Throws<CheckpointException>(() => TrainingCheckpoint.Inspect(dir));
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void AnEditedTrainerStateIsCaughtByTheManifestsHash()
    {
        string dir = WithState(s => s["steps_done"] = 1, rehash: false);
        string message = Refused(dir);
        Assert.Contains(Path.Combine(dir, TrainingCheckpoint.StateName), message);
        Assert.Contains("corrupted", message);
    }

    [Fact]
    public void AManifestOfAnUnknownVersionOrNotAnObjectIsRefused()
    {
        string dir = WithState(_ => { }, rehash: false);
        string manifest = Path.Combine(dir, CheckpointParameters.ManifestName);
        string text = File.ReadAllText(manifest);
        File.WriteAllText(manifest, text.Replace("\"version\": 2", "\"version\": 99"));
        Assert.Contains("\"version\" is 99", Refused(dir));
        File.WriteAllText(manifest, "[]");
        string message = Refused(dir);
        Assert.Contains(manifest, message);
        Assert.Contains("must be a JSON object", message);
    }

    [Theory]
    [InlineData("steps_done", -5)]
    [InlineData("optimizer_step", -100)]
    [InlineData("optimizer_step", 3)] // ahead of steps_done = 2
    [InlineData("lr_schedule_horizon", 0)]
    public void AnOutOfRangeStateValueNamesTheFileAndTheKey(string key, int value)
    {
        string dir = WithState(s => s[key] = value, rehash: true);
        string message = Refused(dir);
        Assert.Contains($"{Path.Combine(dir, TrainingCheckpoint.StateName)}: \"{key}\" is {value}", message);
    }

    [Fact]
    public void AGeneratorStateOfTheWrongSizeIsRefusedBeforeLibtorchSeesIt()
    {
        string dir = WithState(s => s["torch_rng_state"] = Convert.ToBase64String(new byte[100]), rehash: true);
        var e = Assert.Throws<CheckpointException>(() => GptRun.Create(TrainingHarness.Config(steps: 4), TrainingHarness.CyclicData(), resumeFrom: dir));
        Assert.Contains("\"torch_rng_state\" holds 100 bytes", e.Message);
        Assert.Contains(TrainingCheckpoint.StateName, e.Message);
    }

    [Fact]
    public void ExportEvalAndGenerateReadersVerifyTheWeights()
    {
        string file = Path.Combine(good, TrainingCheckpoint.RankFile(0, 1));
        byte[] bytes = File.ReadAllBytes(file);
        for (int i = 0; i < 4096; i++) bytes[bytes.Length / 2 + i] ^= 0x55; // same size, 4 KB flipped inside the tensors
        File.WriteAllBytes(file, bytes);
        var e = Assert.Throws<CheckpointException>(() => CheckpointParameters.Open(good));
        Assert.Contains($"{file} is corrupted", e.Message);
    }
}
