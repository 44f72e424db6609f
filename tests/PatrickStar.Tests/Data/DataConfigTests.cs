using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>The data.* keys of a config file: read, and checked with a message naming the key.</summary>
public class DataConfigTests
{
    [Fact]
    public void DataKeysAreReadAndCheckedFromAConfigFile()
    {
        using var dir = new TempDir();
        string path = dir.File("c.json", """{"data": {"tokenizer": "cl100k", "text_field": "body", "bin_dtype": "uint32", "cache_dir": "/tmp/c"}}""");
        var c = ConfigLoader.Load(path);
        Assert.Equal(("cl100k", "body", "uint32", "/tmp/c"), (c.Data.Tokenizer, c.Data.TextField, c.Data.BinDType, c.Data.CacheDir));

        var defaults = new TrainingConfig().Data;
        Assert.Equal((null, "text", "uint16", null), (defaults.Tokenizer, defaults.TextField, defaults.BinDType, defaults.CacheDir));

        string bad = dir.File("bad.json", """{"data": {"bin_dtype": "uint8"}}""");
        var loaded = ConfigLoader.Load(bad);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(loaded));
        Assert.Contains("data.bin_dtype", e.Message);
        Assert.Contains("uint16 or uint32", e.Message);
    }
}
