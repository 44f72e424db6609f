using PatrickStar.Data;
using PatrickStar.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Data;

public class TokenizerTests
{
    [Fact]
    public void Gpt2TokenizerMatchesKnownIdsAndRoundTrips()
    {
        var tok = Gpt2Tokenizer.Instance;
        Assert.Equal(new[] { 15496, 995 }, tok.Encode("Hello world")); // GPT-2's ids for these words
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(50256, tok.EndOfText);
        string text = "The quick brown fox, naïve café — 42 times!\n\nNew paragraph\twith tabs.";
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
    }
}

public class DefaultCorpusTests
{
    [Fact]
    public void CorpusIsDeterministicAndSizeable()
    {
        string a = DefaultCorpus.Generate(DefaultCorpus.DefaultSeed, 50_000);
        string b = DefaultCorpus.Generate(DefaultCorpus.DefaultSeed, 50_000);
        Assert.Equal(a, b);
        Assert.InRange(a.Length, 50_000, 60_000);
        Assert.NotEqual(a, DefaultCorpus.Generate(DefaultCorpus.DefaultSeed + 1, 50_000));
        var words = a.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(w => w.Trim('.', ',', '"', '?', '!')).Distinct().Count();
        Assert.True(words > 300, $"only {words} distinct words");
    }
}

public class TokenDatasetTests
{
    public TokenDatasetTests() => TorchRuntime.EnsureLoaded();

    private static TokenDataset Counting(int n = 1000, double val = 0.1) =>
        TokenDataset.FromTokens(Enumerable.Range(0, n).Select(i => i % 500).ToArray(), 500, val);

    [Fact]
    public void TargetsAreInputsShiftedByOneWindowOfTheSource()
    {
        var data = Counting();
        var (x, y) = data.Batch(Split.Train, 4, 16, new SplitMix64(7), CPU);
        using (x) using (y)
        {
            Assert.Equal(new long[] { 4, 16 }, x.shape);
            var xs = x.data<long>().ToArray();
            var ys = y.data<long>().ToArray();
            var train = data.Tokens(Split.Train).ToArray();
            for (int b = 0; b < 4; b++)
            {
                int start = Array.IndexOf(train, (int)xs[b * 16]);
                for (int t = 0; t < 16; t++)
                {
                    Assert.Equal(train[start + t], xs[b * 16 + t]);
                    Assert.Equal(train[start + t + 1], ys[b * 16 + t]);
                }
            }
        }
    }

    [Fact]
    public void BatchesAreDeterministicForASeed()
    {
        var data = Counting();
        var (a, _) = data.Batch(Split.Train, 8, 8, new SplitMix64(11), CPU);
        var (b, _) = data.Batch(Split.Train, 8, 8, new SplitMix64(11), CPU);
        var (c, _) = data.Batch(Split.Train, 8, 8, new SplitMix64(12), CPU);
        Assert.True(a.Same(b));
        Assert.False(a.Same(c));
    }

    [Fact]
    public void ValidationIsTheHeldOutTail()
    {
        var data = TokenDataset.FromTokens(Enumerable.Range(0, 1000).ToArray(), 1000, 0.2);
        Assert.Equal(800, data.TrainTokens);
        Assert.Equal(200, data.ValidationTokens);
        Assert.Equal(800, data.Tokens(Split.Validation)[0]);
        Assert.DoesNotContain(800, data.Tokens(Split.Train).ToArray());
    }

    [Fact]
    public void TokensAreCachedUnderTheCacheFolderAndRefreshedWhenTheSourceChanges()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(Path.Combine(dir.Path, "data"));
        string file = dir.File("data/a.txt", string.Concat(Enumerable.Repeat("One small sentence about a cat.\n", 50)));
        var options = new DataOptions { CacheDir = Path.Combine(dir.Path, "cache") };
        var first = TokenDataset.FromFiles(new[] { file }, Gpt2Tokenizer.Instance, 0.1, options);
        string cache = TokenCache.CachePath(file, Gpt2Tokenizer.Instance.Id, options.ResolvedCacheDir);
        Assert.True(File.Exists(cache));
        Assert.StartsWith(Path.Combine(dir.Path, "cache", "tokens"), cache);
        Assert.Equal(new[] { file }, Directory.GetFiles(Path.Combine(dir.Path, "data"))); // nothing written beside the data
        var stamp = File.GetLastWriteTimeUtc(cache);

        var again = TokenDataset.FromFiles(new[] { file }, Gpt2Tokenizer.Instance, 0.1, options);
        Assert.Equal(first.Tokens(Split.Train).ToArray(), again.Tokens(Split.Train).ToArray());
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(cache)); // re-used, not rewritten

        File.WriteAllText(file, string.Concat(Enumerable.Repeat("A different sentence about a dog.\n", 50)));
        var changed = TokenDataset.FromFiles(new[] { file }, Gpt2Tokenizer.Instance, 0.1, options);
        Assert.NotEqual(first.Tokens(Split.Train).ToArray(), changed.Tokens(Split.Train).ToArray());
        Assert.Equal(Gpt2Tokenizer.Instance.Encode("A different sentence about a dog.\n").First(), changed.Tokens(Split.Train)[0]);
    }

    [Fact]
    public void BadDataGivesClearErrors()
    {
        using var dir = new TempDir();
        var missing = Assert.Throws<DataException>(() => TokenDataset.FromFiles(new[] { dir.File("nope.txt") }, Gpt2Tokenizer.Instance, 0.1));
        Assert.Contains("nope.txt' does not exist", missing.Message);

        var empty = Assert.Throws<DataException>(() => TokenDataset.FromFiles(new[] { dir.File("empty.txt", "  \n") }, Gpt2Tokenizer.Instance, 0.1));
        Assert.Contains("empty.txt' is empty", empty.Message);

        string sub = Path.Combine(dir.Path, "sub");
        Directory.CreateDirectory(sub);
        File.WriteAllText(Path.Combine(sub, "notes.md"), "not a txt");
        var noText = Assert.Throws<DataException>(() => TokenDataset.FromFiles(new[] { sub }, Gpt2Tokenizer.Instance, 0.1));
        Assert.Contains("contains no data files (*.txt, *.jsonl, *.parquet, *.bin)", noText.Message);

        File.WriteAllBytes(dir.File("bin.txt"), new byte[] { 0x41, 0xff, 0xfe, 0x42 });
        var binary = Assert.Throws<DataException>(() => TokenDataset.FromFiles(new[] { dir.File("bin.txt") }, Gpt2Tokenizer.Instance, 0.1));
        Assert.Contains("not UTF-8", binary.Message);

        var small = Counting(100);
        var tooShort = Assert.Throws<DataException>(() => small.EnsureFits(64));
        Assert.Contains("fewer than seq_len + 1 = 65", tooShort.Message);
    }

    [Fact]
    public void FoldersContributeTheirTextFilesInOrder()
    {
        using var dir = new TempDir();
        dir.File("b.txt", "second file text here.");
        dir.File("a.txt", "first file text here.");
        var data = TokenDataset.FromFiles(new[] { dir.Path }, Gpt2Tokenizer.Instance, 0.1);
        var tok = Gpt2Tokenizer.Instance;
        Assert.Equal(tok.Encode("first")[0], data.Tokens(Split.Train)[0]);
        Assert.Contains(tok.EndOfText, data.Tokens(Split.Train).ToArray());
    }
}
