using System.Text;

namespace PatrickStar.Tests.Training;

/// <summary>
/// Reads TensorBoard event files for tests, by hand: TFRecord framing (length u64, masked CRC-32C of the length,
/// the data, masked CRC-32C of the data; both checksums verified) and, of the Event protobuf, only wall_time (1),
/// step (2) and summary (5) → value (1) → tag (1), simple_value (2).
/// </summary>
internal static class TensorBoardEvents
{
    public sealed record Scalar(string Tag, long Step, float Value, double WallTime);

    public static List<Scalar> ReadScalars(string dir)
    {
        var scalars = new List<Scalar>();
        foreach (var file in Directory.GetFiles(dir, "events.out.tfevents.*", SearchOption.AllDirectories))
            foreach (var record in Records(File.ReadAllBytes(file)))
                scalars.AddRange(Event(record));
        return scalars;
    }

    public static IEnumerable<byte[]> Records(byte[] file)
    {
        int at = 0;
        while (at < file.Length)
        {
            if (file.Length - at < 12) throw new InvalidDataException($"truncated record header at byte {at}");
            ulong length = BitConverter.ToUInt64(file, at);
            uint lengthCrc = BitConverter.ToUInt32(file, at + 8);
            if (lengthCrc != MaskedCrc(file.AsSpan(at, 8))) throw new InvalidDataException($"length checksum mismatch at byte {at}");
            at += 12;
            if ((ulong)(file.Length - at) < length + 4) throw new InvalidDataException($"truncated record at byte {at}");
            var data = file.AsSpan(at, (int)length).ToArray();
            at += (int)length;
            if (BitConverter.ToUInt32(file, at) != MaskedCrc(data)) throw new InvalidDataException($"data checksum mismatch at byte {at}");
            at += 4;
            yield return data;
        }
    }

    private static IEnumerable<Scalar> Event(byte[] e)
    {
        double wallTime = 0;
        long step = 0;
        var values = new List<(string Tag, float Value)>();
        foreach (var (field, wire, varint, bytes) in Fields(e))
        {
            if (field == 1 && wire == 1) wallTime = BitConverter.ToDouble(bytes);
            else if (field == 2 && wire == 0) step = (long)varint;
            else if (field == 5 && wire == 2)
                foreach (var (f, w, _, value) in Fields(bytes))
                    if (f == 1 && w == 2) values.Add(SummaryValue(value));
        }
        return values.Select(v => new Scalar(v.Tag, step, v.Value, wallTime));
    }

    private static (string, float) SummaryValue(byte[] v)
    {
        string tag = "";
        float value = float.NaN;
        foreach (var (f, w, _, bytes) in Fields(v))
        {
            if (f == 1 && w == 2) tag = Encoding.UTF8.GetString(bytes);
            else if (f == 2 && w == 5) value = BitConverter.ToSingle(bytes);
        }
        return (tag, value);
    }

    /// <summary>A protobuf message's fields: number, wire type, the varint (wire type 0) or the bytes (1: 8, 2: length-delimited, 5: 4).</summary>
    private static IEnumerable<(int Field, int Wire, ulong Varint, byte[] Bytes)> Fields(byte[] m)
    {
        int at = 0;
        while (at < m.Length)
        {
            ulong key = Varint(m, ref at);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: yield return (field, wire, Varint(m, ref at), Array.Empty<byte>()); break;
                case 1: yield return (field, wire, 0, m[at..(at += 8)]); break;
                case 2:
                    int length = (int)Varint(m, ref at);
                    yield return (field, wire, 0, m[at..(at += length)]);
                    break;
                case 5: yield return (field, wire, 0, m[at..(at += 4)]); break;
                default: throw new InvalidDataException($"wire type {wire} of field {field} is not expected in an event");
            }
        }
    }

    private static ulong Varint(byte[] m, ref int at)
    {
        ulong value = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = m[at++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return value;
        }
    }

    /// <summary>TFRecord's checksum: CRC-32C (Castagnoli), rotated right by 15 bits plus 0xa282ead8.</summary>
    public static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
        }
        crc = ~crc;
        return ((crc >> 15) | (crc << 17)) + 0xa282ead8;
    }
}
