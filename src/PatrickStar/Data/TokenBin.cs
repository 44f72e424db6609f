namespace PatrickStar.Data;

/// <summary>nanoGPT-style pre-tokenized data: token ids back to back, little-endian uint16 (or uint32), no header.</summary>
public static class TokenBin
{
    public static int[] Read(string file, string dtype, int vocabSize)
    {
        int width = dtype switch
        {
            "uint16" => 2,
            "uint32" => 4,
            _ => throw new DataException($"data.bin_dtype '{dtype}' is not known; use {string.Join(" or ", DataOptions.BinDTypes)}."),
        };
        long length = new FileInfo(file).Length;
        if (length == 0) throw new DataException($"data file '{file}' is empty; give a .bin file of {dtype} token ids.");
        if (length % width != 0)
            throw new DataException($"data file '{file}' has {length:N0} bytes, not a whole number of {dtype} tokens ({width} bytes each); " +
                                    "it is truncated, or its token width differs (--bin-dtype).");
        if (length / width > Array.MaxLength) throw new DataException($"data file '{file}' holds more than {Array.MaxLength:N0} tokens; split it into several files.");
        // In blocks: a byte array cannot hold 2 GiB, and a .bin file often is larger.
        var tokens = new int[length / width];
        var block = new byte[width << 20];
        using var stream = File.OpenRead(file);
        for (int at = 0; at < tokens.Length;)
        {
            int n = (int)Math.Min(block.Length, (long)(tokens.Length - at) * width);
            stream.ReadExactly(block, 0, n);
            for (int i = 0; i < n / width; i++, at++)
            {
                long id = width == 2 ? BitConverter.ToUInt16(block, i * 2) : BitConverter.ToUInt32(block, i * 4);
                if (id >= vocabSize)
                    throw new DataException($"data file '{file}': token {at:N0} (byte offset {(long)at * width:N0}) is id {id:N0}, outside the tokenizer's " +
                                            $"vocabulary of {vocabSize:N0}; the file was made with another tokenizer (--tokenizer) or token width (--bin-dtype).");
                tokens[at] = (int)id;
            }
        }
        return tokens;
    }
}
