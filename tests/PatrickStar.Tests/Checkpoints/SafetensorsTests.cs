using System.Text;
using PatrickStar.Checkpoints;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Checkpoints;

public class SafetensorsTests
{
    public SafetensorsTests() => TorchRuntime.EnsureLoaded();

    private static Tensor Random(ScalarType dtype, params long[] shape)
    {
        using var t = randn(shape);
        return dtype == ScalarType.Int64 ? randint(0, 1000, shape, dtype: ScalarType.Int64) : t.to(dtype);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void RoundTripIsBitwiseEqual(ScalarType dtype)
    {
        using var dir = new TempDir();
        string path = dir.File("a.safetensors");
        using var a = Random(dtype, 3, 5);
        using var b = Random(dtype, 7);
        using var scalar = Random(dtype); // shape []
        using var nothing = empty(new long[] { 0, 4 }, dtype);
        using var ids = Random(ScalarType.Int64, 2, 2);
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "héllo" };
        SafetensorsWriter.Save(path, new[] { ("a", a), ("b", b), ("scalar", scalar), ("nothing", nothing), ("ids", ids) }, meta);

        using var reader = SafetensorsReader.Open(path);
        Assert.Equal(new[] { "a", "b", "scalar", "nothing", "ids" }, reader.Entries.Select(e => e.Name));
        Assert.Equal(meta, reader.Metadata);
        Assert.Equal(Array.Empty<long>(), reader.Entry("scalar").Shape);
        Assert.Equal(0, reader.Entry("nothing").ByteLength);
        foreach (var (name, expected) in new[] { ("a", a), ("b", b), ("scalar", scalar), ("nothing", nothing), ("ids", ids) })
        {
            using var got = reader.Read(name);
            Assert.True(got.Same(expected), name);
            // Bitwise: compare the raw bytes too (NaN-safe, and catches any conversion).
            Assert.Equal(Bytes(expected), Bytes(got));
        }
        // The data section starts 8-byte aligned and the file is exactly header + data.
        var raw = File.ReadAllBytes(path);
        long headerLength = BitConverter.ToInt64(raw, 0);
        Assert.Equal(0, headerLength % 8);
        Assert.False(File.Exists(path + ".tmp"), "no temp file is left");
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    private static unsafe byte[] Bytes(Tensor t)
    {
        using var c = t.contiguous();
        long n = c.numel() * TensorMemory.ElementSize(c.dtype);
        return n == 0 ? Array.Empty<byte>() : new ReadOnlySpan<byte>(TensorMemory.Address(c), (int)n).ToArray();
    }

    [Fact]
    public void ReadIntoConvertsDtypeAndChecksShape()
    {
        using var dir = new TempDir();
        string path = dir.File("a.safetensors");
        using var a = Random(ScalarType.Float32, 4, 3);
        SafetensorsWriter.Save(path, new[] { ("a", a) });
        using var reader = SafetensorsReader.Open(path);
        using var bf = zeros(4, 3, dtype: ScalarType.BFloat16);
        reader.ReadInto("a", bf);
        using var expected = a.to(ScalarType.BFloat16);
        Assert.True(bf.Same(expected));
        using var param = new TorchSharp.Modules.Parameter(zeros(4, 3));
        reader.ReadInto("a", param); // a parameter that requires grad: copied without autograd
        Assert.True(param.detach().Same(a));
        using var wrong = zeros(3, 4);
        var e = Assert.Throws<SafetensorsException>(() => reader.ReadInto("a", wrong));
        Assert.Contains("entry 'a'", e.Message);
        Assert.Contains("[4, 3]", e.Message);
        var missing = Assert.Throws<SafetensorsException>(() => reader.Read("nope"));
        Assert.Contains("'nope'", missing.Message);
    }

    [Fact]
    public void StreamingWriterEnforcesOrderAndLeavesNoFileWithoutCommit()
    {
        using var dir = new TempDir();
        string path = dir.File("s.safetensors");
        using var a = ones(2);
        using (var w = new SafetensorsWriter(path, new[] { ("x", ScalarType.Float32, new long[] { 2 }), ("y", ScalarType.BFloat16, new long[] { 2 }) }))
        {
            Assert.Throws<InvalidOperationException>(() => w.Write("y", a));
            w.Write("x", a);
            Assert.Throws<InvalidOperationException>(() => w.Commit()); // y not written
        }
        Assert.Empty(Directory.GetFiles(dir.Path)); // disposed without commit: nothing left behind
        using (var w = new SafetensorsWriter(path, new[] { ("x", ScalarType.Float32, new long[] { 2 }), ("y", ScalarType.BFloat16, new long[] { 2 }) }))
        {
            w.Write("x", a);
            w.Write("y", a); // fp32 in, converted to the declared bf16
            w.Commit();
        }
        using var r = SafetensorsReader.Open(path);
        Assert.Equal(ScalarType.BFloat16, r.Entry("y").DType);
        using var y = r.Read("y", ScalarType.Float32);
        Assert.True(y.Same(a));
    }

    private static string WriteSample(TempDir dir)
    {
        string path = dir.File("ok.safetensors");
        using var a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using var b = arange(4, dtype: ScalarType.Float32);
        SafetensorsWriter.Save(path, new[] { ("a", a), ("b", b) });
        return path;
    }

    private static byte[] FileWithHeader(string json, int dataBytes)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + dataBytes];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    private static SafetensorsException Refused(TempDir dir, byte[] content, string name = "bad.safetensors")
    {
        string path = dir.File(name);
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<SafetensorsException>(() => SafetensorsReader.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        return e;
    }

    [Fact]
    public void TruncatedFileNamesEntryAndBytes()
    {
        using var dir = new TempDir();
        var full = File.ReadAllBytes(WriteSample(dir));
        var e = Refused(dir, full[..^4]);
        Assert.Contains("truncated", e.Message);
        Assert.Equal("b", e.Entry);
        Assert.Contains("only 36 bytes are present", e.Message); // 24 + 16 expected, 4 missing

        var tiny = Refused(dir, full[..5], "tiny.safetensors");
        Assert.Contains("truncated", tiny.Message);
        var headerCut = Refused(dir, full[..20], "cut.safetensors");
        Assert.Contains("truncated: the header needs", headerCut.Message);
    }

    [Fact]
    public void CorruptHeadersAreRefusedClearly()
    {
        using var dir = new TempDir();
        Assert.Contains("not valid JSON", Refused(dir, FileWithHeader("{\"a\": {\"dtype\": ", 0), "1.st").Message);

        var huge = new byte[16];
        BitConverter.TryWriteBytes(huge.AsSpan(0, 8), ulong.MaxValue - 5);
        Assert.Contains("header length field", Refused(dir, huge, "2.st").Message);

        var unknown = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F8_E4M3X\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2), "3.st");
        Assert.Contains("unknown or unsupported dtype 'F8_E4M3X'", unknown.Message);
        Assert.Equal("a", unknown.Entry);

        var size = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8), "4.st");
        Assert.Contains("needs 3 × 4 = 12 bytes", size.Message);

        var beyond = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8), "5.st");
        Assert.Contains("truncated", beyond.Message);
        Assert.Equal("b", beyond.Entry);

        var gap = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12), "6.st");
        Assert.Contains("gap", gap.Message);

        var overlap = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), "7.st");
        Assert.Contains("overlap", overlap.Message);

        var negative = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8), "8.st");
        Assert.Contains("0 <= begin <= end", negative.Message);

        var trailing = Refused(dir, FileWithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8), "9.st");
        Assert.Contains("8 bytes follow", trailing.Message);

        Assert.Contains("expected a JSON object", Refused(dir, FileWithHeader("[1,2]", 0), "10.st").Message);
    }

    [Fact]
    public void InteroperatesWithPyBridge()
    {
        using var dir = new TempDir();
        using var f32 = randn(3, 4);
        using var bf16 = randn(5).to(ScalarType.BFloat16);
        using var f16 = randn(2, 2).to(ScalarType.Float16);

        // Ours -> PyBridge.
        string ours = dir.File("ours.safetensors");
        SafetensorsWriter.Save(ours, new[] { ("f32", f32), ("bf16", bf16), ("f16", f16) });
        var loaded = TorchSharp.PyBridge.Safetensors.LoadStateDict(ours);
        Assert.True(loaded["f32"].Same(f32));
        Assert.True(loaded["bf16"].Same(bf16));
        Assert.True(loaded["f16"].Same(f16));
        foreach (var t in loaded.Values) t.Dispose();

        // PyBridge -> ours.
        string theirs = dir.File("theirs.safetensors");
        TorchSharp.PyBridge.Safetensors.SaveStateDict(theirs, new Dictionary<string, Tensor> { ["f32"] = f32, ["bf16"] = bf16, ["f16"] = f16 });
        using var reader = SafetensorsReader.Open(theirs);
        using (var t = reader.Read("f32")) Assert.True(t.Same(f32));
        using (var t = reader.Read("bf16")) Assert.True(t.Same(bf16));
        using (var t = reader.Read("f16")) Assert.True(t.Same(f16));
    }
}
