using System.Security.Cryptography;
using System.Text;

namespace PatrickStar.Data;

/// <summary>
/// Token files cached under the cache folder (never beside the data, whose folder may be read-only or shared):
/// "corpus.txt" gets CACHE/tokens/corpus.txt.HASH-OF-ITS-PATH.gpt2-bpe.tokens, whose header records the SHA-256 of
/// the text it came from. A cache whose hash, tokenizer or length does not match is ignored and rewritten, so an
/// edited source is never served stale tokens. A cache that cannot be written is skipped: the run goes on.
/// </summary>
public static class TokenCache
{
    private static readonly byte[] Magic = "PSTOKv1\0"u8.ToArray();
    private const int PieceTokens = 1 << 20;

    public static string Sha256(byte[] content) => Convert.ToHexString(SHA256.HashData(content)).ToLowerInvariant();

    /// <summary>Tokens of a text, from the cache when it matches, else encoded and cached.</summary>
    /// <param name="hash">The SHA-256 of the text (<see cref="Sha256"/>, or <see cref="TextFile.Hash"/> for a file).</param>
    /// <param name="tokenizationId">The tokenizer's id, plus anything else that changes the tokens (a jsonl field).</param>
    public static int[] GetOrEncode(string cacheKeyPath, string hash, string tokenizationId, string cacheDir, Func<int[]> encode)
    {
        string path = CachePath(cacheKeyPath, tokenizationId, cacheDir);
        var cached = TryRead(path, hash, tokenizationId);
        if (cached is not null) return cached;
        int[] tokens = encode();
        TryWrite(path, hash, tokenizationId, tokens);
        return tokens;
    }

    /// <summary>Where the tokens of <paramref name="source"/> are cached.</summary>
    public static string CachePath(string source, string tokenizationId, string cacheDir)
    {
        string keyed = Sha256(Encoding.UTF8.GetBytes(Path.GetFullPath(source)))[..16];
        return Path.Combine(cacheDir, "tokens", $"{Path.GetFileName(source)}.{keyed}.{tokenizationId}.tokens");
    }

    private static int[]? TryRead(string path, string hash, string tokenizerId)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var reader = new BinaryReader(File.OpenRead(path));
            if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic)) return null;
            if (reader.ReadString() != tokenizerId || reader.ReadString() != hash) return null;
            long count = reader.ReadInt64();
            if (count < 0 || reader.BaseStream.Length - reader.BaseStream.Position != count * sizeof(int)) return null;
            if (count > Array.MaxLength) return null;
            var tokens = new int[count];
            // In pieces: a span of bytes cannot cover 2 GiB or more.
            for (int at = 0; at < tokens.Length; at += PieceTokens)
                reader.BaseStream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan(at, Math.Min(PieceTokens, tokens.Length - at))));
            return tokens;
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    // Written to a temporary file and renamed, so a crash never leaves a half-written cache behind.
    private static bool TryWrite(string path, string hash, string tokenizerId, int[] tokens)
    {
        string temp = $"{path}.{Environment.ProcessId}.tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            using (var writer = new BinaryWriter(File.Create(temp)))
            {
                writer.Write(Magic);
                writer.Write(tokenizerId);
                writer.Write(hash);
                writer.Write((long)tokens.Length);
                for (int at = 0; at < tokens.Length; at += PieceTokens)
                    writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan(at, Math.Min(PieceTokens, tokens.Length - at))));
            }
            File.Move(temp, path, overwrite: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (Exception) { /* best effort */ }
            return false;
        }
    }
}
