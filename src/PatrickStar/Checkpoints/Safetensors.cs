using System.Text;
using System.Text.Json;
using PatrickStar.Runtime;
using static TorchSharp.torch;

namespace PatrickStar.Checkpoints;

/// <summary>A model or checkpoint file that cannot be used; the message names the file, the entry and the problem.</summary>
public class ModelFileException : Exception
{
    public ModelFileException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A safetensors file that is malformed, truncated or does not hold what was asked for.</summary>
public sealed class SafetensorsException : ModelFileException
{
    public string File { get; }
    public string? Entry { get; }

    public SafetensorsException(string file, string? entry, string problem, Exception? inner = null)
        : base($"safetensors file '{file}'{(entry is null ? "" : $", entry '{entry}'")}: {problem}", inner)
    {
        File = file;
        Entry = entry;
    }
}

/// <summary>One tensor in a safetensors file: its dtype, shape and byte range within the data section.</summary>
public sealed record SafetensorsEntry(string Name, ScalarType DType, long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}

/// <summary>A tensor to be written later, loaded on demand (so a whole model never has to be in memory at once).</summary>
public sealed record TensorSource(string Name, ScalarType DType, long[] Shape, Func<Tensor> Load);

/// <summary>The safetensors dtype names this project reads and writes.</summary>
public static class SafetensorsDTypes
{
    private static readonly (string Name, ScalarType Type)[] Known =
    {
        ("F32", ScalarType.Float32), ("BF16", ScalarType.BFloat16), ("F16", ScalarType.Float16),
        ("F64", ScalarType.Float64), ("I64", ScalarType.Int64), ("I32", ScalarType.Int32),
    };

    public static string Name(ScalarType type)
    {
        foreach (var (n, t) in Known) if (t == type) return n;
        throw new ArgumentException($"dtype {type} cannot be stored in safetensors by this program; use one of {string.Join(", ", Known.Select(k => k.Type))}.");
    }

    public static bool TryParse(string name, out ScalarType type)
    {
        foreach (var (n, t) in Known)
            if (n == name) { type = t; return true; }
        type = default;
        return false;
    }

    public static string KnownNames => string.Join(", ", Known.Select(k => k.Name));

    /// <summary>The user-facing precision names (fp32, bf16, fp16) as torch dtypes.</summary>
    public static ScalarType ParsePrecision(string precision) => precision.ToLowerInvariant() switch
    {
        "fp32" or "f32" or "float32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "f16" or "float16" => ScalarType.Float16,
        _ => throw new ArgumentException($"--dtype '{precision}' is not known; use fp32, bf16 or fp16."),
    };
}

internal static class RawBytes
{
    // Streams move at most this many bytes per call (spans are int-indexed).
    private const int Block = 1 << 30;

    public static void EnsureLittleEndian()
    {
        // safetensors stores little-endian data; the raw copies below would silently swap bytes elsewhere.
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors I/O needs a little-endian machine.");
    }

    public static unsafe void Write(Stream stream, Tensor contiguousCpu, long bytes)
    {
        if (bytes == 0) return;
        byte* p = (byte*)TensorMemory.Address(contiguousCpu);
        for (long done = 0; done < bytes;)
        {
            int n = (int)Math.Min(Block, bytes - done);
            stream.Write(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
    }

    /// <summary>Fills the tensor's memory from the stream; returns the bytes actually read (fewer only when the file ends early).</summary>
    public static unsafe long Read(Stream stream, Tensor contiguousCpu, long bytes)
    {
        if (bytes == 0) return 0;
        byte* p = (byte*)TensorMemory.Address(contiguousCpu);
        long done = 0;
        while (done < bytes)
        {
            int n = stream.Read(new Span<byte>(p + done, (int)Math.Min(Block, bytes - done)));
            if (n == 0) break;
            done += n;
        }
        return done;
    }
}

/// <summary>
/// Writes a safetensors file in a streaming way: every entry (name, dtype, shape) is declared up front so
/// that the header can be written first, then the tensors are written one at a time in declaration order.
/// Memory use is bounded by the largest tensor. The file appears under its name only after
/// <see cref="Commit"/> (temporary file, flush to disk, rename), so a crash never leaves half a file behind.
/// </summary>
public sealed class SafetensorsWriter : IDisposable
{
    private readonly string path;
    private readonly string tempPath;
    private readonly FileStream stream;
    private readonly IReadOnlyList<SafetensorsEntry> entries;
    private int next;
    private bool committed;

    public SafetensorsWriter(string path, IEnumerable<(string Name, ScalarType DType, long[] Shape)> declared,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        RawBytes.EnsureLittleEndian();
        this.path = Path.GetFullPath(path);
        var list = new List<SafetensorsEntry>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var (name, dtype, shape) in declared)
        {
            if (name == "__metadata__" || name.Length == 0) throw new ArgumentException($"'{name}' cannot name a tensor in a safetensors file.");
            if (!seen.Add(name)) throw new ArgumentException($"tensor '{name}' is declared twice for '{path}'.");
            if (shape.Any(d => d < 0)) throw new ArgumentException($"tensor '{name}' has a negative dimension in [{string.Join(", ", shape)}].");
            SafetensorsDTypes.Name(dtype); // rejects dtypes the format (here) cannot hold
            long bytes = shape.Aggregate(1L, (a, b) => checked(a * b)) * TensorMemory.ElementSize(dtype);
            list.Add(new SafetensorsEntry(name, dtype, shape.ToArray(), offset, offset + bytes));
            offset += bytes;
        }
        entries = list;

        string? dir = Path.GetDirectoryName(this.path);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        tempPath = $"{this.path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        try
        {
            byte[] header = Header(entries, metadata);
            Span<byte> length = stackalloc byte[8];
            BitConverter.TryWriteBytes(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public IReadOnlyList<SafetensorsEntry> Entries => entries;

    /// <summary>The name the next <see cref="Write"/> must give, or null when all are written.</summary>
    public string? NextName => next < entries.Count ? entries[next].Name : null;

    private static byte[] Header(IReadOnlyList<SafetensorsEntry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            foreach (var e in entries)
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", SafetensorsDTypes.Name(e.DType));
                json.WriteStartArray("shape");
                foreach (long d in e.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(e.Begin);
                json.WriteNumberValue(e.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        int pad = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < pad; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    /// <summary>Writes the next declared tensor, converted to its declared dtype (and copied to the CPU) when needed.</summary>
    public void Write(string name, Tensor tensor)
    {
        if (committed) throw new InvalidOperationException($"'{path}' is already committed.");
        if (next >= entries.Count) throw new InvalidOperationException($"'{name}' was not declared for '{path}': every declared tensor is already written.");
        var e = entries[next];
        if (e.Name != name)
            throw new InvalidOperationException($"tensors must be written in declaration order: expected '{e.Name}' next in '{path}', got '{name}'.");
        if (!tensor.shape.SequenceEqual(e.Shape))
            throw new ArgumentException($"tensor '{name}' for '{path}' has shape [{string.Join(", ", tensor.shape)}] but was declared [{string.Join(", ", e.Shape)}].");
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var t = tensor.detach();
            if (t.device_type != TorchSharp.DeviceType.CPU) t = t.cpu();
            if (t.dtype != e.DType) t = t.to(e.DType);
            t = t.contiguous();
            RawBytes.Write(stream, t, e.ByteLength);
        }
        next++;
    }

    /// <summary>Checks that every declared tensor was written, makes the data durable and moves the file into place.</summary>
    public void Commit()
    {
        if (committed) return;
        if (next < entries.Count)
            throw new InvalidOperationException($"'{path}' cannot be committed: {entries.Count - next} declared tensors (first '{entries[next].Name}') were not written.");
        stream.Flush(flushToDisk: true);
        stream.Dispose();
        File.Move(tempPath, path, overwrite: true);
        committed = true;
    }

    /// <summary>Without a prior <see cref="Commit"/>, discards the partial file.</summary>
    public void Dispose()
    {
        stream.Dispose();
        if (!committed)
            try { File.Delete(tempPath); } catch (IOException) { }
    }

    /// <summary>Writes named tensors (each kept in its own dtype) to one file.</summary>
    public static void Save(string path, IEnumerable<(string Name, Tensor Tensor)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        using var writer = new SafetensorsWriter(path, list.Select(t => (t.Name, t.Tensor.dtype, t.Tensor.shape)), metadata);
        foreach (var (name, t) in list) writer.Write(name, t);
        writer.Commit();
    }

    /// <summary>Writes tensors loaded one at a time from their sources, each converted to <paramref name="dtype"/> (or kept when null).</summary>
    public static void Save(string path, IEnumerable<TensorSource> sources, ScalarType? dtype = null, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = sources.ToList();
        using var writer = new SafetensorsWriter(path, list.Select(s => (s.Name, dtype ?? s.DType, s.Shape)), metadata);
        foreach (var s in list)
        {
            using var t = s.Load();
            writer.Write(s.Name, t);
        }
        writer.Commit();
    }
}

/// <summary>
/// Reads a safetensors file. The header is parsed and fully validated when the file is opened (sizes,
/// offsets, dtypes), so a bad file fails there with a message naming the entry and the problem, never
/// later with wrong weights. Tensors are read one at a time by name.
/// </summary>
public sealed class SafetensorsReader : IDisposable
{
    // The reference implementation refuses headers above 100 MB; a larger one means a corrupt length.
    private const long MaxHeaderBytes = 100_000_000;

    private readonly FileStream stream;
    private readonly Dictionary<string, SafetensorsEntry> byName;
    private readonly long dataStart;

    public string Path { get; }
    public IReadOnlyList<SafetensorsEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsReader(string path, FileStream stream, List<SafetensorsEntry> entries, Dictionary<string, string> metadata, long dataStart)
    {
        Path = path;
        this.stream = stream;
        Entries = entries;
        byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        Metadata = metadata;
        this.dataStart = dataStart;
    }

    public static SafetensorsReader Open(string path)
    {
        RawBytes.EnsureLittleEndian();
        if (!File.Exists(path))
            throw new FileNotFoundException($"safetensors file '{path}' does not exist (working directory: {Environment.CurrentDirectory}).", path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        try
        {
            var (entries, metadata, dataStart) = ParseHeader(path, stream);
            return new SafetensorsReader(path, stream, entries, metadata, dataStart);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    private static (List<SafetensorsEntry>, Dictionary<string, string>, long) ParseHeader(string path, FileStream stream)
    {
        long fileLength = stream.Length;
        SafetensorsException Bad(string? entry, string problem, Exception? inner = null) => new(path, entry, problem, inner);

        if (fileLength < 8)
            throw Bad(null, $"truncated: the file has {fileLength} bytes, fewer than the 8-byte header length. It is not a safetensors file or was cut short; re-export it.");
        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength == 0 || headerLength > MaxHeaderBytes)
            throw Bad(null, $"corrupt header: the header length field says {headerLength} bytes (must be 1 .. {MaxHeaderBytes}). It is not a safetensors file or is damaged.");
        if (8 + (long)headerLength > fileLength)
            throw Bad(null, $"truncated: the header needs {headerLength} bytes after the 8-byte length but only {fileLength - 8} bytes are present.");

        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw Bad(null, $"corrupt header: it is not valid JSON ({e.Message}).", e);
        }

        var entries = new List<SafetensorsEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad(null, $"corrupt header: expected a JSON object, found {doc.RootElement.ValueKind}.");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name)) throw Bad(prop.Name, "corrupt header: the name appears twice.");
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(prop.Name, "corrupt header: __metadata__ must be an object of strings.");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad(prop.Name, $"corrupt header: metadata value of '{m.Name}' is {m.Value.ValueKind}, not a string.");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(prop, Bad));
            }
        }

        // The data section must be exactly the tensors, back to back, in offset order: no holes, no overlaps.
        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        long expected = 0;
        foreach (var e in ordered)
        {
            if (e.Begin != expected)
                throw Bad(e.Name, e.Begin > expected
                    ? $"corrupt header: data_offsets [{e.Begin}, {e.End}] leave a gap after byte {expected} of the data section."
                    : $"corrupt header: data_offsets [{e.Begin}, {e.End}] overlap the previous tensor, which ends at byte {expected}.");
            expected = e.End;
        }
        foreach (var e in ordered)
            if (e.End > dataLength)
                throw Bad(e.Name, $"truncated: its data ends at byte {e.End} of the data section (offsets [{e.Begin}, {e.End}]) but only {dataLength} bytes are present " +
                                  $"(the file should be {dataStart + expected} bytes, it is {fileLength}). The file was cut short; copy or export it again.");
        if (expected != dataLength)
            throw Bad(null, $"corrupt file: the header accounts for {expected} bytes of tensor data but {dataLength} bytes follow it.");
        return (entries, metadata, dataStart);
    }

    private static SafetensorsEntry ParseEntry(JsonProperty prop, Func<string?, string, Exception?, SafetensorsException> bad)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object) throw bad(name, $"corrupt header: expected an object with dtype, shape and data_offsets, found {v.ValueKind}.", null);
        if (!v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String)
            throw bad(name, "corrupt header: 'dtype' is missing or not a string.", null);
        string dtypeName = dtypeEl.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out var dtype))
            throw bad(name, $"unknown or unsupported dtype '{dtypeName}'; this program reads {SafetensorsDTypes.KnownNames}.", null);
        if (!v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array)
            throw bad(name, "corrupt header: 'shape' is missing or not an array.", null);
        var shape = new List<long>();
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw bad(name, $"corrupt header: shape {shapeEl.GetRawText()} must hold non-negative integers.", null);
            shape.Add(dim);
        }
        if (!v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw bad(name, "corrupt header: 'data_offsets' is missing or not a [begin, end] pair.", null);
        var offs = offEl.EnumerateArray().ToArray();
        if (!offs[0].TryGetInt64(out long begin) || !offs[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw bad(name, $"corrupt header: data_offsets {offEl.GetRawText()} must be integers with 0 <= begin <= end.", null);
        long numel;
        try { numel = shape.Aggregate(1L, (a, b) => checked(a * b)); }
        catch (OverflowException) { throw bad(name, $"corrupt header: shape {shapeEl.GetRawText()} has too many elements.", null); }
        int size = TensorMemory.ElementSize(dtype);
        if (numel > long.MaxValue / size || end - begin != numel * size)
            throw bad(name, $"corrupt header: shape [{string.Join(", ", shape)}] of {dtypeName} needs {numel} × {size} = {numel * size} bytes " +
                            $"but data_offsets [{begin}, {end}] give {end - begin}.", null);
        return new SafetensorsEntry(name, dtype, shape.ToArray(), begin, end);
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public SafetensorsEntry Entry(string name) =>
        byName.TryGetValue(name, out var e) ? e
            : throw new SafetensorsException(Path, name, $"no such tensor; the file holds {Entries.Count} tensors" +
                                                         $"{(Entries.Count > 0 ? $" (e.g. '{Entries[0].Name}')" : "")}.");

    /// <summary>Reads one tensor into a new CPU tensor, in the file's dtype or converted to <paramref name="dtype"/>.</summary>
    public Tensor Read(string name, ScalarType? dtype = null)
    {
        var e = Entry(name);
        var t = empty(e.Shape, e.DType);
        try
        {
            Fill(e, t);
            if (dtype is ScalarType want && want != e.DType)
            {
                var converted = t.to(want);
                t.Dispose();
                return converted;
            }
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads one tensor into <paramref name="destination"/> (same shape; its dtype and device may differ: the
    /// values are converted). Works on parameters: the copy runs without autograd.
    /// </summary>
    public void ReadInto(string name, Tensor destination)
    {
        var e = Entry(name);
        if (!destination.shape.SequenceEqual(e.Shape))
            throw new SafetensorsException(Path, name, $"shape [{string.Join(", ", e.Shape)}] in the file, but the destination is [{string.Join(", ", destination.shape)}].");
        using var _ = no_grad();
        if (destination.dtype == e.DType && destination.device_type == TorchSharp.DeviceType.CPU && destination.is_contiguous())
        {
            Fill(e, destination);
            return;
        }
        if (destination.is_contiguous())
        {
            FillConverted(e, destination);
            return;
        }
        using var t = Read(name);
        destination.copy_(t);
    }

    // Elements converted per block: the file's dtype is staged this much at a time, never the whole tensor (a chunk
    // slot filled from a bf16 file must not need the tensor twice).
    private const long ConvertBlockElements = 1L << 22;

    /// <summary>Reads the tensor in blocks through a small staging buffer of the file's dtype, each block converted into its place.</summary>
    private void FillConverted(SafetensorsEntry e, Tensor contiguous)
    {
        long count = e.ElementCount;
        if (count == 0) return;
        long elementBytes = e.ByteLength / count;
        using var flat = contiguous.view(-1);
        using var staging = empty(Math.Min(count, ConvertBlockElements), e.DType);
        stream.Seek(dataStart + e.Begin, SeekOrigin.Begin);
        for (long done = 0; done < count;)
        {
            long n = Math.Min(ConvertBlockElements, count - done);
            using var part = staging.narrow(0, 0, n);
            if (RawBytes.Read(stream, part, n * elementBytes) != n * elementBytes)
                throw new SafetensorsException(Path, e.Name, $"truncated: expected {e.ByteLength} bytes of data, fewer are present (the file changed since it was opened?).");
            using var target = flat.narrow(0, done, n);
            target.copy_(part);
            done += n;
        }
    }

    private void Fill(SafetensorsEntry e, Tensor contiguousCpu)
    {
        stream.Seek(dataStart + e.Begin, SeekOrigin.Begin);
        long got = RawBytes.Read(stream, contiguousCpu, e.ByteLength);
        if (got != e.ByteLength)
            throw new SafetensorsException(Path, e.Name, $"truncated: expected {e.ByteLength} bytes of data, only {got} are present (the file changed since it was opened?).");
    }

    public void Dispose() => stream.Dispose();
}
