using System.Text.Json;
using System.Text.Json.Serialization;

namespace PatrickStar.Config;

/// <summary>
/// Source-generated serialization of <see cref="DeepSpeedSettings"/>, strict: unknown keys, nulls where the record allows
/// none and quoted numbers are refused; names come from the [JsonPropertyName] attributes, case-sensitively. Comments and
/// trailing commas are allowed, as in a file. Whole numbers are read as the key table reads them (3 and 3.0).
/// </summary>
[JsonSourceGenerationOptions(
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    RespectNullableAnnotations = true,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    NumberHandling = JsonNumberHandling.Strict,
    PropertyNameCaseInsensitive = false,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true,
    Converters = [typeof(WholeIntConverter), typeof(WholeLongConverter)])]
[JsonSerializable(typeof(DeepSpeedSettings))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;

/// <summary>Whole numbers as the key table accepts them: JSON writers often emit 3.0 for 3; 3.5 and "3" are refused.</summary>
internal static class WholeNumber
{
    public static long Read(ref Utf8JsonReader reader, long min, long max)
    {
        if (reader.TokenType != JsonTokenType.Number)
            throw new JsonException($"expected a whole number, found {reader.TokenType}.");
        if (reader.TryGetInt64(out long value) && value >= min && value <= max)
            return value;
        // long.MinValue and long.MaxValue convert to exactly -2^63 and 2^63, so this bounds the cast.
        if (!reader.TryGetDouble(out double number) || Math.Floor(number) != number || !(number >= long.MinValue && number < long.MaxValue)
            || (long)number < min || (long)number > max)
            throw new JsonException($"expected a whole number in {min}..{max}, found {number}.");
        return (long)number;
    }
}

internal sealed class WholeIntConverter : JsonConverter<int?>
{
    public override bool HandleNull => false;

    public override int? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        (int)WholeNumber.Read(ref reader, int.MinValue, int.MaxValue);

    public override void Write(Utf8JsonWriter writer, int? value, JsonSerializerOptions options) =>
        writer.WriteNumberValue(value!.Value);
}

internal sealed class WholeLongConverter : JsonConverter<long?>
{
    public override bool HandleNull => false;

    public override long? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        WholeNumber.Read(ref reader, long.MinValue, long.MaxValue);

    public override void Write(Utf8JsonWriter writer, long? value, JsonSerializerOptions options) =>
        writer.WriteNumberValue(value!.Value);
}

/// <summary>A byte or element count: a whole number, or a string with a unit ("2GiB", "64M"), as <see cref="ByteSize"/> reads it.</summary>
internal sealed class ByteSizeConverter : JsonConverter<long?>
{
    public override bool HandleNull => false;

    public override long? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
            return WholeNumber.Read(ref reader, 0, long.MaxValue);
        string text = reader.GetString()!;
        return ByteSize.TryParse(text, out long size) ? size : throw new JsonException($"\"{text}\" is not a size such as \"2GiB\".");
    }

    public override void Write(Utf8JsonWriter writer, long? value, JsonSerializerOptions options) =>
        writer.WriteNumberValue(value!.Value);
}
