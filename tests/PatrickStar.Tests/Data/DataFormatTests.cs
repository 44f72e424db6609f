using Parquet;
using Parquet.Schema;
using PatrickStar.Data;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>Every data format parses to the tokens of its documents; a corrupt input names the file and where it is corrupt.</summary>
public class DataFormatTests
{
    private static readonly ITextTokenizer Gpt2 = Gpt2Tokenizer.Instance;

    private static int[] Documents(params string[] docs) =>
        docs.SelectMany((d, i) => (i == 0 ? Array.Empty<int>() : new[] { Gpt2.EndOfText }).Concat(Gpt2.Encode(d))).ToArray();

    private static DataOptions Options(TempDir dir, List<string>? warnings = null) =>
        new() { CacheDir = Path.Combine(dir.Path, "cache"), Warn = warnings is null ? _ => { } : warnings.Add };

    [Fact]
    public void JsonlDocumentsAreJoinedByEndOfTextAndTheFieldIsChosen()
    {
        using var dir = new TempDir();
        string file = dir.File("a.jsonl", "{\"text\": \"First document.\", \"id\": 1}\n\n{\"text\": \"Second one\\nwith a newline.\"}\n");
        Assert.Equal(Documents("First document.", "Second one\nwith a newline."), JsonlText.Encode(file, "text", Gpt2));

        string other = dir.File("b.jsonl", "{\"body\": \"Alpha.\"}\n{\"body\": \"Beta.\"}\n");
        var data = TokenDataset.FromFiles(new[] { other }, Gpt2, 0.1, Options(dir) with { TextField = "body" });
        var all = data.Tokens(Split.Train).ToArray().Concat(data.Tokens(Split.Validation).ToArray()).ToArray();
        Assert.Equal(Documents("Alpha.", "Beta.").Append(Gpt2.EndOfText).Append(Gpt2.EndOfText), all);
    }

    [Fact]
    public void CorruptJsonlNamesTheFileAndLine()
    {
        using var dir = new TempDir();
        string file = dir.File("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"ok too\"}\n{\"text\": \"cut\n");
        var e = Assert.Throws<DataException>(() => JsonlText.Encode(file, "text", Gpt2));
        Assert.Contains($"data file '{file}', line 3: not valid JSON", e.Message);

        string missing = dir.File("field.jsonl", "{\"text\": \"ok\"}\n{\"content\": \"other\"}\n");
        e = Assert.Throws<DataException>(() => JsonlText.Encode(missing, "text", Gpt2));
        Assert.Contains("line 2: no string field \"text\" (it has content)", e.Message);
        Assert.Contains("--text-field", e.Message);
    }

    private static void WriteParquet(string path, params string[][] rowGroups) => WriteParquetAsync(path, rowGroups).GetAwaiter().GetResult();

    private static async Task WriteParquetAsync(string path, string[][] rowGroups)
    {
        var field = new DataField<string>("text");
        var id = new DataField<int>("id");
        await using var stream = File.Create(path);
        await using var writer = await ParquetWriter.CreateAsync(new ParquetSchema(field, id), stream);
        foreach (var rows in rowGroups)
        {
            using var group = writer.CreateRowGroup();
            await group.WriteAsync(field, rows, null);
            await group.WriteAsync(id, new ReadOnlyMemory<int>(Enumerable.Range(0, rows.Length).ToArray()), null, null, default);
        }
    }

    [Fact]
    public void ParquetRowsOfEveryRowGroupAreDocuments()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "a.parquet");
        WriteParquet(file, new[] { "Row one.", "Row two." }, new[] { "Row three, in the second group." });
        Assert.Equal(Documents("Row one.", "Row two.", "Row three, in the second group."), ParquetText.Encode(file, "text", Gpt2));

        var e = Assert.Throws<DataException>(() => ParquetText.Encode(file, "body", Gpt2));
        Assert.Contains($"data file '{file}' has no text column \"body\" (its columns: text (string), id (Int32))", e.Message);
    }

    [Fact]
    public void CorruptParquetNamesTheFileAndRowGroup()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "a.parquet");
        WriteParquet(file, new[] { "Row one.", "Row two." }, new[] { "Row three." });
        byte[] bytes = File.ReadAllBytes(file);

        // The footer intact, the first row group's pages overwritten.
        var damaged = (byte[])bytes.Clone();
        for (int i = 4; i < 40; i++) damaged[i] = 0xFF;
        string bad = Path.Combine(dir.Path, "bad.parquet");
        File.WriteAllBytes(bad, damaged);
        var e = Assert.Throws<DataException>(() => ParquetText.Encode(bad, "text", Gpt2));
        Assert.True(e.Message.Contains($"data file '{bad}', row group 0 (of 2): corrupt"), e.Message);

        string cut = Path.Combine(dir.Path, "cut.parquet");
        File.WriteAllBytes(cut, bytes[..(bytes.Length / 2)]);
        e = Assert.Throws<DataException>(() => ParquetText.Encode(cut, "text", Gpt2));
        Assert.Contains($"data file '{cut}' is not a readable parquet file", e.Message);
    }

    [Fact]
    public void BinFilesHoldTokenIdsOfEitherWidth()
    {
        using var dir = new TempDir();
        ushort[] small = { 15496, 995, 50256, 0, 7 };
        string u16 = Path.Combine(dir.Path, "train.bin");
        File.WriteAllBytes(u16, small.SelectMany(BitConverter.GetBytes).ToArray());
        Assert.Equal(small.Select(t => (int)t), TokenBin.Read(u16, "uint16", 50257));

        uint[] large = { 70000, 100276, 1, 0 };
        string u32 = Path.Combine(dir.Path, "big.bin");
        File.WriteAllBytes(u32, large.SelectMany(BitConverter.GetBytes).ToArray());
        Assert.Equal(large.Select(t => (int)t), TokenBin.Read(u32, "uint32", 100277));

        var outside = Assert.Throws<DataException>(() => TokenBin.Read(u32, "uint32", 80000));
        Assert.Contains($"data file '{u32}': token 1 (byte offset 4) is id 100,276, outside the tokenizer's vocabulary of 80,000", outside.Message);

        string odd = Path.Combine(dir.Path, "odd.bin");
        File.WriteAllBytes(odd, new byte[] { 1, 0, 2 });
        var e = Assert.Throws<DataException>(() => TokenBin.Read(odd, "uint16", 50257));
        Assert.Contains($"data file '{odd}' has 3 bytes, not a whole number of uint16 tokens", e.Message);

        // Through a dataset: the ids as they are, with no separator added.
        var data = TokenDataset.FromFiles(new[] { u16 }, Gpt2, 0.2, Options(dir));
        Assert.Equal(small.Select(t => (int)t), data.Tokens(Split.Train).ToArray().Concat(data.Tokens(Split.Validation).ToArray()));
    }

    [Fact]
    public void FoldersReadEveryFormatAndNameTheFilesTheySkip()
    {
        using var dir = new TempDir();
        string data = Path.Combine(dir.Path, "data");
        Directory.CreateDirectory(data);
        File.WriteAllText(Path.Combine(data, "a.txt"), "Plain text.");
        File.WriteAllText(Path.Combine(data, "b.jsonl"), "{\"text\": \"Json text.\"}\n");
        File.WriteAllText(Path.Combine(data, "notes.md"), "# not data");
        File.WriteAllText(Path.Combine(data, "table.csv"), "a,b");
        var warnings = new List<string>();

        var dataset = TokenDataset.FromFiles(new[] { data }, Gpt2, 0.1, Options(dir, warnings));
        Assert.Equal("2 files", dataset.Description);
        var warning = Assert.Single(warnings);
        Assert.Contains($"skipped 2 file(s) in '{data}' that are not .txt, .jsonl, .parquet, .bin: notes.md, table.csv.", warning);
        Assert.Equal(4, Directory.GetFiles(data).Length); // the token caches went to the cache folder
        Assert.Equal(2, Directory.GetFiles(Path.Combine(dir.Path, "cache", "tokens")).Length);
    }
}
