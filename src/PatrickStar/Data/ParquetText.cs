using Parquet;
using Parquet.Schema;

namespace PatrickStar.Data;

/// <summary>Parquet data: a string column holds each row's document; read one row group at a time.</summary>
public static class ParquetText
{
    public static int[] Encode(string file, string column, ITextTokenizer tokenizer) =>
        EncodeAsync(file, column, tokenizer).GetAwaiter().GetResult();

    private static async Task<int[]> EncodeAsync(string file, string column, ITextTokenizer tokenizer)
    {
        await using var stream = File.OpenRead(file);
        ParquetReader? reader;
        try
        {
            reader = await ParquetReader.CreateAsync(stream);
        }
        catch (Exception e) when (e is not DataException)
        {
            throw new DataException($"data file '{file}' is not a readable parquet file ({FirstSentence(e)}); re-create or remove it.");
        }
        await using (reader)
        {
            var fields = reader.Schema.GetDataFields();
            var text = fields.FirstOrDefault(f => f.Name == column);
            if (text is null || !IsText(text))
                throw new DataException($"data file '{file}' has no text column \"{column}\" (its columns: {string.Join(", ", fields.Select(f => $"{f.Name} ({(IsText(f) ? "string" : f.ClrType.Name)})"))}); " +
                                        "set data.text_field (--text-field) to the column that holds the text.");
            var tokens = new List<int>();
            for (int g = 0; g < reader.RowGroupCount; g++)
            {
                string?[] rows;
                try
                {
                    using var group = reader.OpenRowGroupReader(g);
                    rows = new string?[group.RowCount];
                    await group.ReadAsync(text, rows.AsMemory());
                }
                catch (Exception e) when (e is not DataException)
                {
                    throw new DataException($"data file '{file}', row group {g} (of {reader.RowGroupCount}): corrupt ({FirstSentence(e)}); re-create the file.");
                }
                foreach (var row in rows)
                    if (!string.IsNullOrEmpty(row)) DocumentFiles.AppendDocument(tokens, row, tokenizer);
            }
            if (tokens.Count == 0) throw new DataException($"data file '{file}': column \"{column}\" holds no text.");
            return tokens.ToArray();
        }
    }

    // Parquet.Net reports a string column's type as string or as ReadOnlyMemory<char>.
    private static bool IsText(DataField f) => f.ClrType == typeof(string) || f.ClrType == typeof(ReadOnlyMemory<char>);

    private static string FirstSentence(Exception e) => e.Message.Split('\n')[0].TrimEnd('.');
}
