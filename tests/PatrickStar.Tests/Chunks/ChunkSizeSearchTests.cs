using System.Diagnostics;
using PatrickStar.Chunks;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Chunks;

public sealed class ChunkSizeSearchTests
{
    private readonly ITestOutputHelper _output;

    public ChunkSizeSearchTests(ITestOutputHelper output) => _output = output;

    private static TensorSpec[] Specs(params long[] sizes) =>
        sizes.Select((numel, i) => new TensorSpec($"t{i}", numel)).ToArray();

    [Fact]
    public void Tie_GoesToTheSmallerChunkSize()
    {
        // Size 4 packs [4][2,2][3] and size 6 packs [4,2][2,3]: both waste exactly 1 element;
        // size 5 packs [4][2,2][3] and wastes 4.
        TensorSpec[] tensors = Specs(4, 2, 2, 3);
        Assert.Equal(1, ChunkLayout.Pack(tensors, 4).WastedElements);
        Assert.Equal(4, ChunkLayout.Pack(tensors, 5).WastedElements);
        Assert.Equal(1, ChunkLayout.Pack(tensors, 6).WastedElements);

        Assert.Equal(4, ChunkSizeSearch.Best(tensors, maxChunkSize: 6, granularity: 1).ChunkSize);
        Assert.Equal(4, ChunkSizeSearch.Best(tensors, maxChunkSize: 6, granularity: 2).ChunkSize);
    }

    [Fact]
    public void DefaultMaximum_IsTwiceTheSmallestCandidate()
    {
        // Waste alone keeps falling towards one chunk for the whole model (size 31 wastes nothing);
        // by default the search stops at 2 × 10, where size 11 ([10][10][10,1]) is the best.
        TensorSpec[] tensors = Specs(10, 10, 10, 1);

        ChunkLayout best = ChunkSizeSearch.Best(tensors, granularity: 1);
        Assert.Equal(11, best.ChunkSize);
        Assert.Equal(3, best.ChunkCount);

        Assert.Equal(31, ChunkSizeSearch.Best(tensors, maxChunkSize: 40, granularity: 1).ChunkSize);
    }

    [Fact]
    public void Candidates_AreMultiplesOfTheGranularity_FromTheLargestTensorUp()
    {
        ChunkLayout best = ChunkSizeSearch.Best(Specs(1000, 30, 500), granularity: 256);

        Assert.True(best.ChunkSize >= 1000);
        Assert.Equal(0, best.ChunkSize % 256);
    }

    [Fact]
    public void MaximumBelowTheLargestTensor_IsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => ChunkSizeSearch.Best(Specs(5, 100, 7), maxChunkSize: 99, granularity: 1));
        Assert.Contains("'t1'", ex.Message);
        Assert.Contains("100", ex.Message);

        // At least the largest tensor, but no multiple of the granularity fits below the maximum.
        Assert.Throws<ArgumentException>(() => ChunkSizeSearch.Best(Specs(100), maxChunkSize: 120, granularity: 64));
        Assert.Equal(128, ChunkSizeSearch.Best(Specs(100), maxChunkSize: 128, granularity: 64).ChunkSize);
    }

    [Fact]
    public void InvalidTensors_AreRejectedAsByPack()
    {
        var duplicate = new[] { new TensorSpec("a", 1), new TensorSpec("a", 1) };
        Assert.Throws<ArgumentException>(() => ChunkSizeSearch.Best(duplicate));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChunkSizeSearch.Best(Specs(1), granularity: 0));
    }

    [Fact]
    public void EmptyAndZeroSizeLists_GetTheSmallestChunk()
    {
        Assert.Equal(0, ChunkSizeSearch.Best(Array.Empty<TensorSpec>(), granularity: 16).ChunkCount);

        ChunkLayout zeros = ChunkSizeSearch.Best(Specs(0, 0), granularity: 16);
        Assert.Equal(16, zeros.ChunkSize);
        Assert.Equal(1, zeros.ChunkCount);
    }

    [Fact]
    public void Padding_CountsAsWaste()
    {
        // Unpadded, size 7 ([6][6][6,1], waste 2) beats 6 ([6][6][6][1], waste 5).
        // Padded to an even count, size 7 needs 4 chunks (waste 9) while 6 keeps waste 5 (and 12,
        // [6,6][6,1], ties at 5 but is larger): the padding changes the choice.
        TensorSpec[] tensors = Specs(6, 6, 6, 1);
        Assert.Equal(7, ChunkSizeSearch.Best(tensors, granularity: 1).ChunkSize);

        ChunkLayout padded = ChunkSizeSearch.Best(tensors, granularity: 1, padToMultipleOf: 2);
        Assert.Equal(6, padded.ChunkSize);
        Assert.Equal(4, padded.ChunkCount);
        Assert.Equal(5, padded.WastedElements);
    }

    [Fact]
    public void Best_NeverWastesMoreThanAnyCandidate_RandomLists()
    {
        var random = new Random(20240611);
        for (int trial = 0; trial < 300; trial++)
        {
            int count = random.Next(0, 40);
            long[] sizes = Enumerable.Range(0, count)
                .Select(_ => random.Next(5) == 0 ? 0L : random.Next(1, random.Next(2) == 0 ? 50 : 600))
                .ToArray();
            TensorSpec[] tensors = Specs(sizes);
            long granularity = new long[] { 1, 3, 16, 64 }[random.Next(4)];
            int pad = random.Next(1, 4);
            long largest = sizes.DefaultIfEmpty(0).Max();
            long smallest = RoundUp(Math.Max(largest, 1), granularity);
            long? max = random.Next(2) == 0 ? null : smallest + random.Next(0, 1500);

            ChunkLayout best = ChunkSizeSearch.Best(tensors, max, granularity, pad);

            // Brute force over the same candidates, with the real packer.
            long expectedSize = -1, expectedWaste = long.MaxValue;
            for (long size = smallest; size <= (max ?? 2 * smallest); size += granularity)
            {
                long waste = ChunkLayout.Pack(tensors, size, pad).WastedElements;
                Assert.True(best.WastedElements <= waste,
                    $"trial {trial}: size {size} wastes {waste}, the search's {best.ChunkSize} wastes {best.WastedElements}");
                if (waste < expectedWaste)
                    (expectedSize, expectedWaste) = (size, waste);
            }

            Assert.True(best.ChunkSize >= largest, $"trial {trial}");
            Assert.Equal(expectedSize, best.ChunkSize);
            Assert.Equal(0, best.ChunkCount % pad);
            Assert.Equal(ChunkLayout.Pack(tensors, best.ChunkSize, pad).Placements, best.Placements);
        }
    }

    [Fact]
    public void Gpt2XlLikeModel_PacksWithUnderOnePercentWaste()
    {
        const long embd = 1600;
        const long embedding = 50257 * embd;
        var tensors = new List<TensorSpec> { new("wte", embedding) };
        for (int layer = 0; layer < 48; layer++)
        {
            long[] block =
                [embd, embd, 3 * embd * embd, 3 * embd, embd * embd, embd, embd, embd, 4 * embd * embd, 4 * embd, embd * 4 * embd, embd];
            tensors.AddRange(block.Select((numel, i) => new TensorSpec($"h.{layer}.{i}", numel)));
        }
        tensors.Add(new TensorSpec("ln_f.weight", embd));
        tensors.Add(new TensorSpec("ln_f.bias", embd));

        var watch = Stopwatch.StartNew();
        ChunkLayout best = ChunkSizeSearch.Best(tensors);
        watch.Stop();
        _output.WriteLine($"{best.Describe()} in {watch.Elapsed.TotalMilliseconds:0} ms");

        // The smallest candidate (the embedding rounded up to 1024) gives 21 chunks at about 92%;
        // the search finds 19 chunks at about 99.9%.
        ChunkLayout smallest = ChunkLayout.Pack(tensors, (embedding + 1023) / 1024 * 1024);
        Assert.True(best.ChunkSize >= embedding);
        Assert.True(best.ChunkSize <= 2 * smallest.ChunkSize);
        Assert.True(best.Utilisation > 0.99, best.Describe());
        Assert.True(best.WastedElements < smallest.WastedElements);
        Assert.Equal(tensors.Sum(t => t.Numel), best.TotalElements);
    }

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;
}
