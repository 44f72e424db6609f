using System.Text.Json.Nodes;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using PatrickStar.Tests.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.HfFolders;

/// <summary>Hugging Face folders: a model exported to a folder (one file or shards) reads back with identical logits.</summary>
public class HfFolderTests
{
    public HfFolderTests() => TorchRuntime.EnsureLoaded();

    private static float[] Logits(GptModel model)
    {
        using var _ = no_grad();
        using var ids = arange(20, dtype: ScalarType.Int64).remainder(model.Config.VocabSize).reshape(2, 10);
        using var logits = model.call(ids);
        return logits.data<float>().ToArray();
    }

    [Fact]
    public void ExportedFolderImportsBackWithIdenticalLogits()
    {
        using var dir = new TempDir();
        using var model = HuggingFaceGpt2Tests.NewModel(5);
        var files = HuggingFaceGpt2Folder.Export(model, dir.Path, ScalarType.Float32, 5_000_000_000);
        Assert.Equal(new[] { HfFolder.SingleFile }, files);
        Assert.False(File.Exists(Path.Combine(dir.Path, HfFolder.IndexFile)));
        Assert.Equal("gpt2", JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, HfFolder.ConfigFile)))!["model_type"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(dir.Path, HfFolder.GenerationConfigFile)));

        using var back = HuggingFaceGpt2.Load(dir.Path);
        Assert.Equal(model.Config, back.Config);
        Assert.Equal(Logits(model), Logits(back));
    }

    [Fact]
    public void ATinyShardLimitWritesSeveralShardsThatReadBack()
    {
        using var dir = new TempDir();
        using var model = HuggingFaceGpt2Tests.NewModel(6);
        const long limit = 40_000; // bytes: the 64x256 MLP matrices (64 KiB in fp32) each take a shard of their own
        var files = HuggingFaceGpt2Folder.Export(model, dir.Path, ScalarType.Float32, limit);
        Assert.True(files.Count >= 4, $"{files.Count} shards");
        Assert.Equal($"model-00001-of-{files.Count:D5}.safetensors", files[0]);

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, HfFolder.IndexFile)))!;
        var map = index["weight_map"]!.AsObject();
        Assert.Equal(model.named_parameters().Select(p => p.name).Order(), map.Select(kv => kv.Key).Order());
        long total = 0;
        foreach (var f in files)
        {
            using var shard = SafetensorsReader.Open(Path.Combine(dir.Path, f));
            long bytes = shard.Entries.Sum(e => e.ByteLength);
            Assert.True(bytes <= limit || shard.Entries.Count == 1, $"{f}: {bytes} bytes in {shard.Entries.Count} tensors");
            Assert.All(shard.Entries, e => Assert.Equal(f, map[e.Name]!.GetValue<string>()));
            total += bytes;
        }
        Assert.Equal(total, index["metadata"]!["total_size"]!.GetValue<long>());

        using (var back = HuggingFaceGpt2.Load(dir.Path))
            Assert.Equal(Logits(model), Logits(back));

        // Exported again unsharded into the same folder: the old shards and index go, the folder still reads.
        HuggingFaceGpt2Folder.Export(model, dir.Path, ScalarType.BFloat16, 5_000_000_000);
        Assert.Equal(new[] { HfFolder.SingleFile }, Directory.GetFiles(dir.Path, "*.safetensors").Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(dir.Path, HfFolder.IndexFile)));
        using var bf16 = HuggingFaceGpt2.Load(dir.Path);
        Assert.Equal("bfloat16", JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, HfFolder.ConfigFile)))!["torch_dtype"]!.GetValue<string>());
    }

    [Fact]
    public void ADamagedFolderNamesWhatIsWrong()
    {
        using var dir = new TempDir();
        using var model = HuggingFaceGpt2Tests.NewModel(7);
        var files = HuggingFaceGpt2Folder.Export(model, dir.Path, ScalarType.Float32, 40_000);

        File.Delete(Path.Combine(dir.Path, files[1]));
        var e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Load(dir.Path));
        Assert.Contains($"names shard '{files[1]}', which is not a file in '{dir.Path}'", e.Message);

        File.Delete(Path.Combine(dir.Path, HfFolder.IndexFile));
        e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Load(dir.Path));
        Assert.Contains("has neither model.safetensors nor model.safetensors.index.json", e.Message);

        File.WriteAllText(Path.Combine(dir.Path, HfFolder.ConfigFile), "{\"model_type\": \"llama\"}");
        e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Load(dir.Path));
        Assert.Contains("describes a \"llama\" model, not gpt2", e.Message);

        File.Delete(Path.Combine(dir.Path, HfFolder.ConfigFile));
        e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Load(dir.Path));
        Assert.Contains("has no config.json", e.Message);
    }
}
