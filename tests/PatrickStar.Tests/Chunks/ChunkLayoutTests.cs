using PatrickStar.Chunks;
using Xunit;

namespace PatrickStar.Tests.Chunks;

public sealed class ChunkLayoutTests
{
    private static TensorSpec[] Specs(params (string Name, long Numel)[] tensors) =>
        tensors.Select(t => new TensorSpec(t.Name, t.Numel)).ToArray();

    // Chunk size 10. Expected packing (greedy, never back-filled):
    //   chunk 0: a@0 (4), b@4 (3)            used 7  - c (5) would overflow
    //   chunk 1: c@0 (5), d@5 (0)            used 5  - e (10) would overflow
    //   chunk 2: e@0 (10)                    used 10
    //   chunk 3: f@0 (2), g@2 (8), h@10 (0)  used 10 - a zero-size tensor still fits a full chunk
    //   chunk 4: i@0 (1)                     used 1  - although it would fit in chunk 0
    private static readonly TensorSpec[] Handmade =
        Specs(("a", 4), ("b", 3), ("c", 5), ("d", 0), ("e", 10), ("f", 2), ("g", 8), ("h", 0), ("i", 1));

    [Fact]
    public void Pack_PlacesTensorsInOrder_StartingANewChunkWhenOneDoesNotFit()
    {
        ChunkLayout layout = ChunkLayout.Pack(Handmade, 10);

        var expected = new[]
        {
            new TensorPlacement("a", 0, 0, 4), new TensorPlacement("b", 0, 4, 3),
            new TensorPlacement("c", 1, 0, 5), new TensorPlacement("d", 1, 5, 0),
            new TensorPlacement("e", 2, 0, 10),
            new TensorPlacement("f", 3, 0, 2), new TensorPlacement("g", 3, 2, 8), new TensorPlacement("h", 3, 10, 0),
            new TensorPlacement("i", 4, 0, 1),
        };
        Assert.Equal(expected, layout.Placements);
        Assert.Equal(10, layout.ChunkSize);
        Assert.Equal(5, layout.ChunkCount);
        Assert.Equal(new long[] { 7, 5, 10, 10, 1 }, layout.UsedPerChunk);
        Assert.Equal(33, layout.TotalElements);
    }

    [Fact]
    public void LookupByName_AndByChunk()
    {
        ChunkLayout layout = ChunkLayout.Pack(Handmade, 10);

        Assert.Equal(new TensorPlacement("g", 3, 2, 8), layout["g"]);
        Assert.Equal(new[] { "f", "g", "h" }, layout.TensorsIn(3).Select(p => p.Name));
        Assert.Equal(new[] { "e" }, layout.TensorsIn(2).Select(p => p.Name));
        Assert.True(layout.TryGetPlacement("d", out TensorPlacement? d));
        Assert.Equal(1, d!.Chunk);
        Assert.False(layout.TryGetPlacement("zz", out _));

        var missing = Assert.Throws<KeyNotFoundException>(() => layout["zz"]);
        Assert.Contains("'zz'", missing.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.TensorsIn(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => layout.TensorsIn(-1));
    }

    [Fact]
    public void Utilisation_IsUsedOverAllocated()
    {
        ChunkLayout layout = ChunkLayout.Pack(Handmade, 10);

        Assert.Equal(50, layout.CapacityElements);
        Assert.Equal(17, layout.WastedElements);
        Assert.Equal(33.0 / 50.0, layout.Utilisation, 12);
        Assert.Equal("5 chunks of 10 elements, utilisation 66.0%", layout.Describe());
    }

    [Fact]
    public void Describe_UsesTheSingularForOneChunk()
    {
        ChunkLayout layout = ChunkLayout.Pack(Specs(("x", 3)), 8);

        Assert.Equal("1 chunk of 8 elements, utilisation 37.5%", layout.Describe());
    }

    [Fact]
    public void TensorAsLargeAsTheChunk_Fits()
    {
        ChunkLayout layout = ChunkLayout.Pack(Specs(("x", 8), ("y", 8)), 8);

        Assert.Equal(2, layout.ChunkCount);
        Assert.Equal(1.0, layout.Utilisation);
    }

    [Fact]
    public void OversizeTensor_IsRejectedWithNameSizeAndChunkSize()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            ChunkLayout.Pack(Specs(("small", 5), ("wte.weight", 12345)), 1000));

        Assert.Contains("'wte.weight'", ex.Message);
        Assert.Contains("12345", ex.Message);
        Assert.Contains("1000", ex.Message);
    }

    [Fact]
    public void DuplicateNames_AreRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() =>
            ChunkLayout.Pack(Specs(("a", 1), ("b", 1), ("a", 2)), 10));

        Assert.Contains("'a'", ex.Message);
        Assert.Contains("twice", ex.Message);
    }

    [Fact]
    public void NegativeSizesAndMissingNames_AreRejected()
    {
        Assert.Contains("'n'", Assert.Throws<ArgumentException>(() => ChunkLayout.Pack(Specs(("n", -1)), 10)).Message);
        Assert.Throws<ArgumentException>(() => ChunkLayout.Pack(Specs(("", 1)), 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkLayout.Pack(Specs(("a", 1)), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkLayout.Pack(Specs(("a", 1)), 10, padToMultipleOf: 0));
    }

    [Fact]
    public void ZeroSizeFirstTensor_OpensChunkZero()
    {
        ChunkLayout layout = ChunkLayout.Pack(Specs(("z", 0), ("a", 4)), 4);

        Assert.Equal(new TensorPlacement("z", 0, 0, 0), layout["z"]);
        Assert.Equal(new TensorPlacement("a", 0, 0, 4), layout["a"]);
        Assert.Equal(1, layout.ChunkCount);
    }

    [Fact]
    public void EmptyList_HasNoChunks()
    {
        ChunkLayout layout = ChunkLayout.Pack(Array.Empty<TensorSpec>(), 10, padToMultipleOf: 4);

        Assert.Equal(0, layout.ChunkCount);
        Assert.Equal(0, layout.TotalElements);
        Assert.Equal(0.0, layout.Utilisation);
        Assert.Empty(layout.Placements);
    }

    [Theory]
    [InlineData(1, 5)]
    [InlineData(2, 6)]
    [InlineData(4, 8)]
    [InlineData(5, 5)]
    [InlineData(7, 7)]
    public void Padding_AppendsEmptyChunksUpToAMultiple(int multiple, int expectedChunks)
    {
        ChunkLayout layout = ChunkLayout.Pack(Handmade, 10, multiple);

        Assert.Equal(expectedChunks, layout.ChunkCount);
        Assert.Equal(0, layout.ChunkCount % multiple);
        Assert.Equal(new long[] { 7, 5, 10, 10, 1 }, layout.UsedPerChunk.Take(5));
        Assert.All(layout.UsedPerChunk.Skip(5), used => Assert.Equal(0, used));
        for (int c = 5; c < expectedChunks; c++)
            Assert.Empty(layout.TensorsIn(c));
        Assert.Equal(33.0 / (expectedChunks * 10), layout.Utilisation, 12);
        // Padding never moves a tensor.
        Assert.Equal(ChunkLayout.Pack(Handmade, 10).Placements, layout.Placements);
    }

    [Fact]
    public void Collections_CannotBeModifiedThroughACast()
    {
        ChunkLayout layout = ChunkLayout.Pack(Handmade, 10);

        Assert.False(layout.Placements is TensorPlacement[]);
        Assert.False(layout.UsedPerChunk is long[]);
        Assert.False(layout.TensorsIn(0) is List<TensorPlacement>);
    }
}
