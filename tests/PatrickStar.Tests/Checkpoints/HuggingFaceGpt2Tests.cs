using System.Text.Json;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Checkpoints;

public class HuggingFaceGpt2Tests
{
    public HuggingFaceGpt2Tests() => TorchRuntime.EnsureLoaded();

    internal static readonly GptConfig Small = new(VocabSize: 128, ContextLength: 32, Layers: 2, Hidden: 64, Heads: 4);

    internal static GptModel NewModel(long seed, GptConfig? config = null)
    {
        manual_seed(seed);
        var m = new GptModel(config ?? Small);
        m.eval();
        return m;
    }

    private static Tensor Logits(GptModel model)
    {
        using var _ = no_grad();
        using var ids = arange(20, dtype: ScalarType.Int64).remainder(Small.VocabSize).reshape(2, 10);
        return model.call(ids);
    }

    [Fact]
    public void ParameterShapesListTheModelsParametersInOrder()
    {
        using var model = NewModel(1);
        var expected = model.named_parameters().Select(p => (p.name, p.parameter.shape)).ToList();
        var listed = HuggingFaceGpt2.ParameterShapes(Small);
        Assert.Equal(expected.Select(e => e.name), listed.Select(l => l.Name));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].shape, listed[i].Shape);
    }

    [Fact]
    public void ExportThenImportGivesIdenticalLogits()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        using var source = NewModel(1);
        HuggingFaceGpt2.Export(source, path, ScalarType.Float32);

        using (var reader = SafetensorsReader.Open(path))
        {
            Assert.DoesNotContain(reader.Entries, e => e.Name == HuggingFaceGpt2.LmHead); // as HF's own files
            Assert.All(reader.Entries, e => Assert.StartsWith("transformer.", e.Name));
            Assert.Equal("pt", reader.Metadata["format"]);
            Assert.Equal(new long[] { 64, 192 }, reader.Entry("transformer.h.0.attn.c_attn.weight").Shape); // Conv1D [in, out]
        }
        var config = HuggingFaceGpt2.ReadConfigJson(Path.Combine(dir.Path, "config.json"));
        Assert.Equal(Small, config);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "config.json")));
        Assert.Equal("gpt2", json.RootElement.GetProperty("model_type").GetString());
        Assert.Equal("gelu_new", json.RootElement.GetProperty("activation_function").GetString());
        Assert.Equal("GPT2LMHeadModel", json.RootElement.GetProperty("architectures")[0].GetString());
        Assert.Equal(32, json.RootElement.GetProperty("n_ctx").GetInt32());

        using var target = NewModel(2);
        using (var before = Logits(target))
        using (var expected = Logits(source))
            Assert.False(before.Same(expected)); // a different init really differs
        HuggingFaceGpt2.Import(target, path);
        using (var got = Logits(target))
        using (var expected = Logits(source))
            Assert.True(got.Same(expected));

        // Load builds the model from config.json beside the file.
        using var loaded = HuggingFaceGpt2.Load(path);
        loaded.eval();
        using (var got = Logits(loaded))
        using (var expected = Logits(source))
            Assert.True(got.Same(expected));
    }

    /// <summary>Writes the model's tensors under HF-style names (no prefix, with lm_head and mask buffers) by hand.</summary>
    private static string WriteHfStyle(TempDir dir, GptModel model, bool prefix, bool lmHead, bool buffers)
    {
        string path = dir.File($"hf-{prefix}-{lmHead}-{buffers}.safetensors");
        var tensors = new List<(string, Tensor)>();
        foreach (var (name, p) in model.named_parameters())
            tensors.Add((prefix ? name : name["transformer.".Length..], p.detach()));
        if (lmHead) tensors.Add(("lm_head.weight", model.Transformer.TokenEmbedding.Weight.detach()));
        if (buffers)
        {
            using (var mask = ones(1, 1, 32, 32)) tensors.Add(("h.0.attn.bias", mask.tril()));
            tensors.Add(("h.0.attn.masked_bias", tensor(-1e4f)));
        }
        SafetensorsWriter.Save(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
        return path;
    }

    [Theory]
    [InlineData(true, false, false)]
    [InlineData(false, false, false)]
    [InlineData(false, true, true)]
    [InlineData(true, true, false)]
    public void ImportAcceptsHfNamingVariants(bool prefix, bool lmHead, bool buffers)
    {
        using var dir = new TempDir();
        using var source = NewModel(3);
        string path = WriteHfStyle(dir, source, prefix, lmHead, buffers);
        using var target = NewModel(4);
        HuggingFaceGpt2.Import(target, path);
        using var got = Logits(target);
        using var expected = Logits(source);
        Assert.True(got.Same(expected));
    }

    [Fact]
    public void ImportConvertsDtype()
    {
        using var dir = new TempDir();
        string path = dir.File("bf16.safetensors");
        using var source = NewModel(5);
        HuggingFaceGpt2.Export(source, path, ScalarType.BFloat16);
        using var target = NewModel(6);
        HuggingFaceGpt2.Import(target, path);
        var wte = target.Transformer.TokenEmbedding.Weight;
        Assert.Equal(ScalarType.Float32, wte.dtype);
        using var expected = source.Transformer.TokenEmbedding.Weight.detach().to(ScalarType.BFloat16).to(ScalarType.Float32);
        Assert.True(wte.detach().Same(expected));
    }

    [Fact]
    public void ImportListsEveryMismatchAtOnce()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        using var source = NewModel(7);
        var tensors = source.named_parameters()
            .Where(p => p.name != "transformer.h.1.mlp.c_fc.bias")                  // missing
            .Select(p => (p.name, p.name == "transformer.h.0.attn.c_proj.weight"
                ? zeros(64, 65) : p.parameter.detach()))                             // wrong shape
            .Append(("transformer.h.0.attn.extra", zeros(2)))                        // unexpected
            .ToList();
        SafetensorsWriter.Save(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
        using var target = NewModel(8);
        using var before = target.Transformer.TokenEmbedding.Weight.detach().clone();
        var e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Import(target, path));
        Assert.Contains(path, e.Message);
        Assert.Contains("missing tensor 'transformer.h.1.mlp.c_fc.bias' [256]", e.Message);
        Assert.Contains("wrong shape for 'transformer.h.0.attn.c_proj.weight': the model expects [64, 64], found [64, 65]", e.Message);
        Assert.Contains("unexpected tensor 'transformer.h.0.attn.extra'", e.Message);
        Assert.Contains("3 problem(s)", e.Message);
        Assert.True(target.Transformer.TokenEmbedding.Weight.detach().Same(before)); // nothing was loaded
    }

    [Fact]
    public void UntiedLmHeadIsRefused()
    {
        using var dir = new TempDir();
        string path = dir.File("untied.safetensors");
        using var source = NewModel(9);
        var tensors = source.named_parameters().Select(p => (p.name, p.parameter.detach()))
            .Append(("lm_head.weight", randn(128, 64))).ToList();
        SafetensorsWriter.Save(path, tensors);
        foreach (var (_, t) in tensors) t.Dispose();
        using var target = NewModel(10);
        var e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.Import(target, path));
        Assert.Contains("'lm_head.weight' differs", e.Message);
    }

    [Fact]
    public void SizesAreInferredWithoutConfigJsonButHeadsMustBeGiven()
    {
        using var dir = new TempDir();
        using var source = NewModel(11);
        string path = WriteHfStyle(dir, source, prefix: false, lmHead: false, buffers: true);
        using var reader = SafetensorsReader.Open(path);
        var e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.ResolveConfig(reader, heads: null));
        Assert.Contains("--heads", e.Message);
        Assert.Contains("n_layer=2, n_embd=64, vocab_size=128, n_positions=32", e.Message);
        Assert.Equal(Small, HuggingFaceGpt2.ResolveConfig(reader, heads: 4));
    }

    [Fact]
    public void ConfigJsonWithUnsupportedSettingsIsRefused()
    {
        using var dir = new TempDir();
        string path = dir.File("config.json", "{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_positions\":8,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"activation_function\":\"relu\"}");
        var e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.ReadConfigJson(path));
        Assert.Contains("\"activation_function\" = \"relu\"", e.Message);
        File.WriteAllText(path, "{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1}");
        e = Assert.Throws<ModelFileException>(() => HuggingFaceGpt2.ReadConfigJson(path));
        Assert.Contains("\"n_head\" is missing", e.Message);
        Assert.Contains("\"n_positions\" is missing", e.Message);
    }

    /// <summary>A checkpoint directory per the manifest contract, parameters split over two rank files.</summary>
    internal static string WriteCheckpoint(string dir, GptModel model)
    {
        Directory.CreateDirectory(dir);
        var named = model.named_parameters().ToList();
        var files = new[] { "rank-00000-of-00002.safetensors", "rank-00001-of-00002.safetensors" };
        for (int r = 0; r < 2; r++)
        {
            var tensors = new List<(string, Tensor)>();
            // Interleaved ownership, and a non-model order inside each file.
            foreach (var (name, p) in named.Where((_, i) => i % 2 == r).Reverse())
            {
                tensors.Add(("exp_avg/" + name, zeros_like(p)));
                tensors.Add(("param/" + name, p.detach()));
                tensors.Add(("exp_avg_sq/" + name, ones_like(p)));
            }
            SafetensorsWriter.Save(Path.Combine(dir, files[r]), tensors);
            foreach (var (_, t) in tensors) t.Dispose();
        }
        var c = model.Config;
        var manifest = new
        {
            format = "patrickstar-checkpoint", version = 2,
            model = new { vocab_size = c.VocabSize, context_length = c.ContextLength, layers = c.Layers, hidden = c.Hidden, heads = c.Heads },
            files,
            file_checks = files.Select(f => new { name = f, bytes = new FileInfo(Path.Combine(dir, f)).Length, sha256 = CheckpointManifest.Sha256(Path.Combine(dir, f)) }),
            step = 100,
        };
        File.WriteAllText(Path.Combine(dir, "manifest.json"), JsonSerializer.Serialize(manifest));
        return dir;
    }

    [Fact]
    public void ExportFromCheckpointEqualsExportingTheModel()
    {
        using var dir = new TempDir();
        using var model = NewModel(12);
        using var older = NewModel(13);
        string root = Path.Combine(dir.Path, "ckpt");
        WriteCheckpoint(Path.Combine(root, "step-00000100"), older);
        WriteCheckpoint(Path.Combine(root, "step-00000200"), model);
        Directory.CreateDirectory(Path.Combine(root, "step-00000300")); // no manifest: not finished, skipped

        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            string direct = Path.Combine(dir.Path, $"direct-{dtype}", "model.safetensors");
            string viaCheckpoint = Path.Combine(dir.Path, $"ckpt-{dtype}", "model.safetensors");
            HuggingFaceGpt2.Export(model, direct, dtype);
            string used = GptCheckpoints.Export(root, viaCheckpoint, dtype);
            Assert.EndsWith("step-00000200", used);
            Assert.Equal(File.ReadAllBytes(direct), File.ReadAllBytes(viaCheckpoint));
            Assert.Equal(File.ReadAllText(Path.Combine(Path.GetDirectoryName(direct)!, "config.json")),
                         File.ReadAllText(Path.Combine(Path.GetDirectoryName(viaCheckpoint)!, "config.json")));
        }

        using var loaded = GptCheckpoints.LoadModel(Path.Combine(root, "step-00000200"));
        loaded.eval();
        using var got = Logits(loaded);
        using var expected = Logits(model);
        Assert.True(got.Same(expected));
    }

    [Fact]
    public void BadCheckpointsAreRefusedClearly()
    {
        using var dir = new TempDir();
        var none = Assert.ThrowsAny<ModelFileException>(() => CheckpointParameters.Open(dir.Path));
        Assert.Contains("no manifest.json", none.Message);

        using var model = NewModel(14);
        string ck = WriteCheckpoint(Path.Combine(dir.Path, "c"), model);
        string manifest = Path.Combine(ck, "manifest.json");
        string text = File.ReadAllText(manifest);
        File.WriteAllText(manifest, text.Replace("\"version\":2", "\"version\":7"));
        Assert.Contains("\"version\" is 7", Assert.ThrowsAny<ModelFileException>(() => CheckpointParameters.Open(ck)).Message);
        File.WriteAllText(manifest, text.Replace("\"rank-00001-of-00002.safetensors\"", "\"rank-00000-of-00002.safetensors\""));
        Assert.Contains("lists 'rank-00000-of-00002.safetensors' twice", Assert.ThrowsAny<ModelFileException>(() => CheckpointParameters.Open(ck)).Message);
        File.WriteAllText(manifest, text.Replace("rank-00001-of-00002.safetensors", "../x.safetensors"));
        Assert.Contains("must be file names relative to the checkpoint directory", Assert.ThrowsAny<ModelFileException>(() => CheckpointParameters.Open(ck)).Message);
        File.WriteAllText(manifest, text);
        File.Delete(Path.Combine(ck, "rank-00001-of-00002.safetensors"));
        Assert.Contains("rank-00001-of-00002.safetensors is missing", Assert.ThrowsAny<ModelFileException>(() => CheckpointParameters.Open(ck)).Message);
        // With half the parameters gone, export lists what is missing.
        File.WriteAllText(manifest, text.Replace(",\"rank-00001-of-00002.safetensors\"", ""));
        var e = Assert.ThrowsAny<ModelFileException>(() => GptCheckpoints.Export(ck, Path.Combine(dir.Path, "out.safetensors"), ScalarType.Float32));
        Assert.Contains("missing 'transformer.wpe.weight'", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, "out.safetensors")));
    }
}
