using System.Security.Cryptography;
using System.Text;

namespace PatrickStar.Data;

/// <summary>
/// A data file read in blocks, never whole: its SHA-256 (the token cache's key) and its tokens, so that files of
/// any size (2 GiB and more) work. Reads are bounded by the size the file system reports, so a device such as
/// /dev/zero is refused instead of read for ever.
/// </summary>
public static class TextFile
{
    public const int DefaultReadBlockBytes = 1 << 20;

    /// <summary>Characters tokenized per call: a text is cut at the first newline at or after this many characters.</summary>
    public const int DefaultEncodeBlockChars = 1 << 20;

    /// <summary>The file's SHA-256 (lower-case hex); throws <see cref="DataException"/> for a file with no text or not a regular file.</summary>
    public static string Hash(string file, int readBlockBytes = DefaultReadBlockBytes)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        bool text = false;
        ReadBlocks(file, readBlockBytes, block =>
        {
            sha.AppendData(block);
            if (!text) text = block.IndexOfAnyExcept(" \n\r\t"u8) >= 0;
        });
        if (!text) throw new DataException($"data file '{file}' is empty (or only whitespace); give a file with text in it.");
        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// The file's tokens, decoded and tokenized a block at a time (blocks end at a newline, which GPT-2's
    /// pre-tokenizer treats as a boundary anyway).
    /// </summary>
    public static int[] Encode(string file, ITextTokenizer tokenizer, int readBlockBytes = DefaultReadBlockBytes, int encodeBlockChars = DefaultEncodeBlockChars)
    {
        var decoder = new UTF8Encoding(false, throwOnInvalidBytes: true).GetDecoder();
        var tokens = new List<int>();
        string pending = "";
        long offset = 0;
        char[] chars = new char[Encoding.UTF8.GetMaxCharCount(readBlockBytes)];
        ReadBlocks(file, readBlockBytes, block =>
        {
            int n;
            try
            {
                n = decoder.GetChars(block, chars, flush: false);
            }
            catch (DecoderFallbackException e)
            {
                throw NotUtf8(file, offset + Math.Max(0, e.Index));
            }
            offset += block.Length;
            pending = EncodeWholeBlocks(pending + new string(chars, 0, n), tokenizer, encodeBlockChars, tokens);
        });
        try
        {
            int rest = decoder.GetChars(ReadOnlySpan<byte>.Empty, chars, flush: true);
            pending += new string(chars, 0, rest);
        }
        catch (DecoderFallbackException)
        {
            throw NotUtf8(file, offset);
        }
        if (pending.Length > 0) tokens.AddRange(tokenizer.Encode(pending));
        return tokens.ToArray();
    }

    /// <summary>Tokenizes <paramref name="text"/> in memory, in the same blocks as <see cref="Encode"/>.</summary>
    public static int[] EncodeText(string text, ITextTokenizer tokenizer, int encodeBlockChars = DefaultEncodeBlockChars)
    {
        var tokens = new List<int>();
        string rest = EncodeWholeBlocks(text, tokenizer, encodeBlockChars, tokens);
        if (rest.Length > 0) tokens.AddRange(tokenizer.Encode(rest));
        return tokens.ToArray();
    }

    // Encodes every block of text that is complete (it ends at the first newline at or after encodeBlockChars);
    // returns the remainder, which more text may still extend.
    private static string EncodeWholeBlocks(string text, ITextTokenizer tokenizer, int encodeBlockChars, List<int> tokens)
    {
        int start = 0;
        while (text.Length - start > encodeBlockChars)
        {
            int newline = text.IndexOf('\n', start + encodeBlockChars);
            if (newline < 0) break;
            tokens.AddRange(tokenizer.Encode(text[start..(newline + 1)]));
            start = newline + 1;
        }
        return start == 0 ? text : text[start..];
    }

    private static DataException NotUtf8(string file, long offset) =>
        new($"data file '{file}' is not UTF-8 text (invalid byte near offset {offset:N0}); convert it to UTF-8 first.");

    // Calls onBlock with successive blocks of at most readBlockBytes, for exactly the length the file had when opened.
    private static void ReadBlocks(string file, int readBlockBytes, Action<ReadOnlySpan<byte>> onBlock)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(readBlockBytes);
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long length = new FileInfo(file).Length;
        var buffer = new byte[(int)Math.Min(readBlockBytes, Math.Max(1, length))];
        long left = length;
        while (left > 0)
        {
            int n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) throw new DataException($"data file '{file}' became shorter while it was read; give a file that is not being written to.");
            onBlock(buffer.AsSpan(0, n));
            left -= n;
        }
        // A device (/dev/zero, /dev/urandom) or a pipe reports size 0 yet yields bytes: read no more than one of them.
        if (stream.Read(buffer, 0, 1) > 0)
            throw new DataException(length == 0
                ? $"data file '{file}' is not a regular file (a device or a pipe); give a text file."
                : $"data file '{file}' grew while it was read; give a file that is not being written to.");
    }
}
