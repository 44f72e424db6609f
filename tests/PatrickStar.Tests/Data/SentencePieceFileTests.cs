using System.Text;
using PatrickStar.Data;
using Xunit;

namespace PatrickStar.Tests.Data;

/// <summary>
/// A folder's tokenizer.model (SentencePiece's ModelProto), written byte by byte here from sentencepiece_model.proto's
/// field numbers, loads through the folder path and gives the ids its pieces and scores imply.
/// </summary>
public class SentencePieceFileTests
{
    private const int Normal = 1, Unknown = 2, Control = 3; // ModelProto.SentencePiece.Type
    private const int Unigram = 1, Bpe = 2;                  // TrainerSpec.ModelType

    private static void Varint(List<byte> o, ulong v)
    {
        for (; v >= 0x80; v >>= 7) o.Add((byte)(v | 0x80));
        o.Add((byte)v);
    }

    private static void Key(List<byte> o, int field, int wireType) => Varint(o, (ulong)(field << 3 | wireType));

    private static void VarintField(List<byte> o, int field, long v)
    {
        Key(o, field, 0);
        Varint(o, (ulong)v);
    }

    private static void BytesField(List<byte> o, int field, byte[] bytes)
    {
        Key(o, field, 2);
        Varint(o, (ulong)bytes.Length);
        o.AddRange(bytes);
    }

    private static byte[] Piece(string piece, float score, int type)
    {
        var o = new List<byte>();
        BytesField(o, 1, Encoding.UTF8.GetBytes(piece)); // piece
        Key(o, 2, 5);                                     // score: fixed32 float
        o.AddRange(BitConverter.GetBytes(score));
        VarintField(o, 3, type);                          // type
        return o.ToArray();
    }

    /// <summary>ModelProto: pieces (1), trainer_spec (2: model_type 3, vocab_size 4, byte_fallback 35, unk/bos/eos ids 40-42),
    /// normalizer_spec (3: name 1, add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5).</summary>
    private static byte[] Model(int modelType, params (string Piece, float Score)[] normal)
    {
        var o = new List<byte>();
        var pieces = new List<(string, float, int)> { ("<unk>", 0, Unknown), ("<s>", 0, Control), ("</s>", 0, Control) };
        pieces.AddRange(normal.Select(p => (p.Piece, p.Score, Normal)));
        foreach (var (piece, score, type) in pieces) BytesField(o, 1, Piece(piece, score, type));
        var trainer = new List<byte>();
        VarintField(trainer, 3, modelType);
        VarintField(trainer, 4, pieces.Count);
        VarintField(trainer, 35, 0);
        VarintField(trainer, 40, 0);
        VarintField(trainer, 41, 1);
        VarintField(trainer, 42, 2);
        BytesField(o, 2, trainer.ToArray());
        var normalizer = new List<byte>();
        BytesField(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        VarintField(normalizer, 3, 1);
        VarintField(normalizer, 4, 1);
        VarintField(normalizer, 5, 1);
        BytesField(o, 3, normalizer.ToArray());
        return o.ToArray();
    }

    private static ITextTokenizer Load(TempDir dir, byte[] model)
    {
        File.WriteAllBytes(Path.Combine(dir.Path, TokenizerFolder.SentencePieceFile), model);
        return Tokenizers.Resolve(null, dir.Path); // the folder's own tokenizer
    }

    private static readonly (string, float)[] Chars = "▁helowrd".Select(c => (c.ToString(), -50f)).ToArray(); // ids 3..10

    [Fact]
    public void ABpeModelMergesByScore()
    {
        // Merges in score order: he, ll, llo, hello, ▁hello; or, wor, ▁wor, ld, ▁world (ids 11..20).
        using var dir = new TempDir();
        var t = Load(dir, Model(Bpe, [.. Chars, ("he", -1), ("ll", -2), ("llo", -3), ("hello", -4), ("▁hello", -5),
            ("or", -6), ("wor", -7), ("▁wor", -8), ("ld", -9), ("▁world", -10)]));
        Assert.StartsWith("sp-", t.Id);
        Assert.Equal(new[] { 15, 20 }, t.Encode("hello world"));
        Assert.Equal(new[] { 20, 15, 3, 0 }, t.Encode("world hello z")); // z is no piece: <unk>
        Assert.Equal("hello world", t.Decode([15, 20]));
        Assert.Equal((21, 2), (t.VocabSize, t.EndOfText));
        Assert.Equal(((int?)1, (int?)2), Tokenizers.BeginAndEnd(t));
    }

    [Fact]
    public void AUnigramModelTakesTheBestScoringSegmentation()
    {
        // "▁hello" alone scores -5; "▁he" + "llo" scores -2 and wins; "▁world" has no rival.
        using var dir = new TempDir();
        var t = Load(dir, Model(Unigram, [.. Chars, ("▁he", -1), ("llo", -1), ("▁hello", -5), ("▁world", -3)]));
        Assert.Equal(new[] { 11, 12, 14 }, t.Encode("hello world"));
        Assert.Equal("hello world", t.Decode([11, 12, 14]));
    }
}
