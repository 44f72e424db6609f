using System.Text.Json.Nodes;
using PatrickStar.Data;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>cl100k and o200k written as HF tokenizer.json (their own split regex, then byte-level BPE) tokenize as the encodings do.</summary>
public class TiktokenFilesTests
{
    private const string Sample = "The quick brown fox, naïve café — 4242 times!\n\nNew   paragraph\twith tabs, 'quotes', I'LL émojis 🙂 and CamelCaseWords123.\r\n" +
                                  "Ünïcödé ΑΒΓ αβγ 漢字かな, path/to/file.txt; x<=y && z!=w <|endoftext|>";

    [Theory]
    [InlineData("cl100k", 100_277, 100_257)]
    [InlineData("o200k", 200_019, 199_999)]
    public void WrittenFilesGiveTheEncodingsIds(string name, int vocab, int endOfText)
    {
        using var dir = new TempDir();
        var written = TokenizerFolder.Write(name, null, dir.Path);
        Assert.Equal(new[] { TokenizerFolder.JsonFile, TokenizerFolder.ConfigFile }, written);
        Assert.False(File.Exists(Path.Combine(dir.Path, TokenizerFolder.VocabFile))); // GPT-2's files would split text as GPT-2

        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, TokenizerFolder.JsonFile)))!;
        Assert.Equal("Split", (string?)json["pre_tokenizer"]!["pretokenizers"]![0]!["type"]);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, TokenizerFolder.ConfigFile)))!;
        Assert.Equal("<|endoftext|>", (string?)config["eos_token"]);
        Assert.Equal("PreTrainedTokenizerFast", (string?)config["tokenizer_class"]);

        var expected = Tokenizers.Resolve(name).Encode(Sample);
        var fromFiles = Tokenizers.Resolve(dir.Path);
        Assert.Equal(expected, fromFiles.Encode(Sample));
        Assert.Equal((vocab, endOfText), (fromFiles.VocabSize, fromFiles.EndOfText));
        Assert.Equal(Sample, fromFiles.Decode(expected));
    }
}
