using System.Security.Cryptography;
using System.Text;
using PatrickStar.Data;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>Data files read in blocks (any size): the same hash and tokens as reading the whole file, with tiny blocks.</summary>
public class TextFileTests
{
    // Multi-byte characters (2, 3 and 4 bytes in UTF-8) so that blocks of 7 bytes cut characters in half.
    private static readonly string Text = string.Concat(Enumerable.Range(0, 60).Select(i =>
        $"Line {i}: naïve café — 😀 {new string('x', i % 7)}\n" + (i % 9 == 0 ? "\n\n  indented paragraph\twith tabs\n" : "")));

    [Fact]
    public void TinyReadBlocksGiveTheWholeFilesHashAndTokens()
    {
        using var dir = new TempDir();
        string file = dir.File("t.txt", Text);
        var tok = Gpt2Tokenizer.Instance;
        Assert.Equal(Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Text))).ToLowerInvariant(), TextFile.Hash(file, readBlockBytes: 7));
        // One encode block: exactly the tokenizer's result on the whole text.
        Assert.Equal(tok.Encode(Text), TextFile.Encode(file, tok, readBlockBytes: 7, encodeBlockChars: int.MaxValue));
        // Small encode blocks (cut at newlines): the same as cutting the text in memory.
        Assert.Equal(TextFile.EncodeText(Text, tok, encodeBlockChars: 100), TextFile.Encode(file, tok, readBlockBytes: 7, encodeBlockChars: 100));
        Assert.Equal(Text, tok.Decode(TextFile.Encode(file, tok, readBlockBytes: 7, encodeBlockChars: 100)));
    }

    [Fact]
    public void InvalidUtf8IsNamedWithItsOffset()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "bad.txt");
        File.WriteAllBytes(file, [.. Encoding.UTF8.GetBytes("hello world, fine so far"), 0xFF, (byte)'!']);
        var e = Assert.Throws<DataException>(() => TextFile.Encode(file, Gpt2Tokenizer.Instance, readBlockBytes: 5));
        Assert.Contains("is not UTF-8 text (invalid byte near offset 24)", e.Message);
    }

    [Fact]
    public void ADeviceIsRefusedAfterOneByte()
    {
        var e = Assert.Throws<DataException>(() => TextFile.Hash("/dev/zero"));
        Assert.Contains("is not a regular file", e.Message);
    }
}
