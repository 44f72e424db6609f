using System.Text;
using System.Text.Json;

namespace PatrickStar.Data;

/// <summary>JSON Lines data: one JSON object per line, its text in a named field; blank lines are skipped.</summary>
public static class JsonlText
{
    public static int[] Encode(string file, string field, ITextTokenizer tokenizer)
    {
        var tokens = new List<int>();
        using var reader = new StreamReader(file, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        long line = 0;
        while (true)
        {
            string? text;
            try
            {
                text = reader.ReadLine();
            }
            catch (DecoderFallbackException)
            {
                throw new DataException($"data file '{file}', line {line + 1:N0}: not UTF-8 text; convert the file to UTF-8.");
            }
            if (text is null) break;
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            DocumentFiles.AppendDocument(tokens, Field(file, line, text, field), tokenizer);
        }
        if (tokens.Count == 0) throw new DataException($"data file '{file}' holds no JSON lines; give a file with one JSON object per line.");
        return tokens.ToArray();
    }

    private static string Field(string file, long line, string json, string field)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new DataException($"data file '{file}', line {line:N0}: a JSON {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}, not an object; each line must be one JSON object.");
            if (!doc.RootElement.TryGetProperty(field, out var value) || value.ValueKind != JsonValueKind.String)
            {
                var names = doc.RootElement.EnumerateObject().Select(p => p.Name).Take(8).ToList();
                throw new DataException($"data file '{file}', line {line:N0}: no string field \"{field}\" (it has {(names.Count == 0 ? "no fields" : string.Join(", ", names))}); " +
                                        "set data.text_field (--text-field) to the field that holds the text.");
            }
            return value.GetString()!;
        }
        catch (JsonException e)
        {
            throw new DataException($"data file '{file}', line {line:N0}: not valid JSON ({e.Message.Split('.')[0]}); fix or remove that line.");
        }
    }
}
