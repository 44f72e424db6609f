using PatrickStar.Data;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>Named encodings give the ids their references give; a folder's tokenizer files give the ids of the encoding they came from.</summary>
public class TokenizerEncodingTests
{
    // Ids published for these strings: tiktoken/GPT-2 ("Hello world"), and Microsoft.ML.Tokenizers' own tests
    // (cl100k "Hello World" inside <|im_start|>..<|im_end|>; o200k "<|endoftext|>Hello ⭐ World<|endofprompt|>").
    [Theory]
    [InlineData("gpt2", "Hello world", new[] { 15496, 995 }, 50257, 50256)]
    [InlineData("r50k", "Hello world", new[] { 15496, 995 }, 50257, 50256)]
    [InlineData("cl100k", "Hello World", new[] { 9906, 4435 }, 100277, 100257)]
    [InlineData("cl100k", "Hello, world!", new[] { 9906, 11, 1917, 0 }, 100277, 100257)]
    [InlineData("o200k", "<|endoftext|>Hello ⭐ World<|endofprompt|>", new[] { 199999, 13225, 161181, 5922, 200018 }, 200019, 199999)]
    public void NamedEncodingsGiveTheirKnownIds(string name, string text, int[] ids, int vocab, int endOfText)
    {
        var tokenizer = Tokenizers.Resolve(name);
        Assert.Equal(ids, tokenizer.Encode(text));
        Assert.Equal(vocab, tokenizer.VocabSize);
        Assert.Equal(endOfText, tokenizer.EndOfText);
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.True(ids.Max() < tokenizer.VocabSize);
    }

    private const string Sample = "The quick brown fox, naïve café — 42 times!\n\nNew   paragraph\twith tabs, 'quotes', émojis 🙂 and CamelCaseWords123.";

    [Fact]
    public void GptTwoFilesWrittenFromTheEncodingTokenizeLikeIt()
    {
        using var dir = new TempDir();
        var written = TokenizerFolder.Write("gpt2", null, dir.Path);
        Assert.Equal(new[] { TokenizerFolder.VocabFile, TokenizerFolder.MergesFile, TokenizerFolder.JsonFile, TokenizerFolder.ConfigFile }, written);
        var expected = Gpt2Tokenizer.Instance.Encode(Sample);

        var fromJson = Tokenizers.Resolve(null, dir.Path); // the folder's own tokenizer, by default
        Assert.StartsWith("bpe-", fromJson.Id);
        Assert.Equal(expected, fromJson.Encode(Sample));
        Assert.Equal((50257, 50256), (fromJson.VocabSize, fromJson.EndOfText));
        Assert.Equal(Sample, fromJson.Decode(expected));

        File.Delete(Path.Combine(dir.Path, TokenizerFolder.JsonFile));
        var fromVocabAndMerges = Tokenizers.Resolve(dir.Path);
        Assert.Equal(expected, fromVocabAndMerges.Encode(Sample));
    }

    [Fact]
    public void UnknownTokenizersAndOversizedVocabulariesAreRefusedInOneLine()
    {
        var unknown = Assert.Throws<DataException>(() => Tokenizers.Resolve("gpt5"));
        Assert.Contains("tokenizer 'gpt5' is neither a known encoding nor a folder; use one of gpt2, r50k, cl100k, o200k", unknown.Message);

        var tooBig = Assert.Throws<DataException>(() => Tokenizers.EnsureFitsModel(Tokenizers.Resolve("cl100k"), 50257, "model.vocab_size"));
        Assert.Contains("has 100,277 tokens but the model (model.vocab_size) has vocab_size = 50,257", tooBig.Message);
        Assert.Contains("--tokenizer", tooBig.Message);
        Assert.DoesNotContain('\n', tooBig.Message);
        Tokenizers.EnsureFitsModel(Tokenizers.Resolve("gpt2"), 50257, "model.vocab_size"); // fits exactly

        using var empty = new TempDir();
        var none = Assert.Throws<DataException>(() => TokenizerFolder.Load(empty.Path));
        Assert.Contains("has no tokenizer", none.Message);
    }
}
