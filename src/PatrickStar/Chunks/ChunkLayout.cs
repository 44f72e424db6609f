using System.Globalization;

namespace PatrickStar.Chunks;

/// <summary>A tensor to be placed in a chunk: its unique name and its number of elements.</summary>
/// <remarks>Lists of specs are given in execution order (the order of first use in forward), because
/// tensors used together should share a chunk: moving one chunk then prefetches the next layers.</remarks>
public sealed record TensorSpec(string Name, long Numel);

/// <summary>Where a tensor lives: chunk index and element offset inside that chunk.</summary>
public sealed record TensorPlacement(string Name, int Chunk, long Offset, long Numel);

/// <summary>
/// The assignment of tensors to fixed-size chunks. Every chunk list (param, fp32 master, momentum,
/// variance, ...) uses the same layout, so chunk <c>i</c> of each list holds the same tensors.
/// </summary>
/// <remarks>
/// Built by <see cref="Pack"/> (a given chunk size) or <see cref="ChunkSizeSearch.Best"/> (the chunk size
/// with the least waste). Sizes and offsets are in elements, not bytes: the same layout serves every
/// element type.
/// </remarks>
public sealed class ChunkLayout
{
    private readonly Dictionary<string, TensorPlacement> _byName;
    private readonly IReadOnlyList<TensorPlacement>[] _perChunk;

    private ChunkLayout(long chunkSize, TensorPlacement[] placements, long[] usedPerChunk)
    {
        ChunkSize = chunkSize;
        // Read-only wrappers: a caller casting back to an array must not be able to change the layout.
        Placements = Array.AsReadOnly(placements);
        UsedPerChunk = Array.AsReadOnly(usedPerChunk);
        TotalElements = usedPerChunk.Sum();

        _byName = placements.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var perChunk = new List<TensorPlacement>[usedPerChunk.Length];
        for (int c = 0; c < perChunk.Length; c++)
            perChunk[c] = new List<TensorPlacement>();
        foreach (TensorPlacement p in placements)
            perChunk[p.Chunk].Add(p);
        _perChunk = perChunk.Select(list => (IReadOnlyList<TensorPlacement>)list.AsReadOnly()).ToArray();
    }

    /// <summary>Capacity of every chunk, in elements.</summary>
    public long ChunkSize { get; }

    /// <summary>All placements, in the order the tensors were given.</summary>
    public IReadOnlyList<TensorPlacement> Placements { get; }

    /// <summary>Number of chunks, including empty padding chunks.</summary>
    public int ChunkCount => UsedPerChunk.Count;

    /// <summary>Elements occupied by tensors in each chunk (0 for padding chunks).</summary>
    public IReadOnlyList<long> UsedPerChunk { get; }

    /// <summary>Elements of all tensors together.</summary>
    public long TotalElements { get; }

    /// <summary>Elements allocated for all chunks together: <c>ChunkCount × ChunkSize</c>.</summary>
    public long CapacityElements => ChunkCount * ChunkSize;

    /// <summary>Allocated elements that hold no tensor: <c>ChunkCount × ChunkSize − TotalElements</c>.</summary>
    public long WastedElements => CapacityElements - TotalElements;

    /// <summary>Fraction of the allocated chunk memory that holds tensors, in [0, 1]. 0 when there are
    /// no chunks at all (nothing is used, and dividing by zero capacity would be meaningless).</summary>
    public double Utilisation => CapacityElements == 0 ? 0.0 : (double)TotalElements / CapacityElements;

    /// <summary>The placement of a tensor.</summary>
    /// <exception cref="KeyNotFoundException">No tensor of that name is in the layout.</exception>
    public TensorPlacement this[string name] =>
        _byName.TryGetValue(name, out TensorPlacement? placement)
            ? placement
            : throw new KeyNotFoundException($"Tensor '{name}' is not in the chunk layout.");

    /// <summary>The placement of a tensor, or false when no tensor of that name is in the layout.</summary>
    public bool TryGetPlacement(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorPlacement? placement) =>
        _byName.TryGetValue(name, out placement);

    /// <summary>The tensors of one chunk, in offset order (empty for a padding chunk).</summary>
    public IReadOnlyList<TensorPlacement> TensorsIn(int chunk)
    {
        if (chunk < 0 || chunk >= ChunkCount)
            throw new ArgumentOutOfRangeException(nameof(chunk), chunk, $"The layout has {ChunkCount} chunks.");
        return _perChunk[chunk];
    }

    /// <summary>Short human summary, e.g. "19 chunks of 81984512 elements, utilisation 99.9%".</summary>
    public string Describe() =>
        string.Create(CultureInfo.InvariantCulture,
            $"{ChunkCount} {(ChunkCount == 1 ? "chunk" : "chunks")} of {ChunkSize} elements, utilisation {Utilisation * 100:0.0}%");

    public override string ToString() => Describe();

    /// <summary>
    /// Packs tensors greedily, in the given order: a tensor goes into the current chunk when it fits in
    /// what is left of it, otherwise a new chunk starts. Tensors are never split and earlier chunks are
    /// never back-filled, so tensors used together stay together.
    /// </summary>
    /// <param name="tensors">Tensors in execution order; names must be unique, sizes may be 0.</param>
    /// <param name="chunkSize">Capacity of each chunk in elements; at least the largest tensor.</param>
    /// <param name="padToMultipleOf">Empty chunks are appended until the chunk count is a multiple of this
    /// (data-parallel ranks each own an equal share of the chunks).</param>
    /// <exception cref="ArgumentException">A tensor is larger than the chunk size, has a negative size,
    /// or a name is missing or repeated.</exception>
    public static ChunkLayout Pack(IReadOnlyList<TensorSpec> tensors, long chunkSize, int padToMultipleOf = 1)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(padToMultipleOf);
        Validate(tensors);

        var placements = new TensorPlacement[tensors.Count];
        var used = new List<long>();
        for (int i = 0; i < tensors.Count; i++)
        {
            TensorSpec t = tensors[i];
            if (t.Numel > chunkSize)
                throw new ArgumentException(
                    $"tensor '{t.Name}' has {t.Numel} elements, more than the chunk size of {chunkSize} elements; " +
                    $"tensors are never split: set --chunk-size (chunk_size) to at least {t.Numel}, or leave it out to pick the size that wastes least.");

            // The very first tensor always opens chunk 0 (even a zero-size one needs a chunk to point into).
            if (used.Count == 0 || used[^1] + t.Numel > chunkSize)
                used.Add(0);

            placements[i] = new TensorPlacement(t.Name, used.Count - 1, used[^1], t.Numel);
            used[^1] += t.Numel;
        }

        while (used.Count % padToMultipleOf != 0)
            used.Add(0);

        return new ChunkLayout(chunkSize, placements, used.ToArray());
    }

    /// <summary>Checks what every packing needs: names present and unique, sizes not negative.</summary>
    internal static void Validate(IReadOnlyList<TensorSpec> tensors)
    {
        var firstIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tensors.Count; i++)
        {
            TensorSpec t = tensors[i] ?? throw new ArgumentException($"Tensor #{i} is null.", nameof(tensors));
            if (string.IsNullOrEmpty(t.Name))
                throw new ArgumentException($"Tensor #{i} has no name.", nameof(tensors));
            if (t.Numel < 0)
                throw new ArgumentException($"Tensor '{t.Name}' has a negative size ({t.Numel} elements).", nameof(tensors));
            if (!firstIndex.TryAdd(t.Name, i))
                throw new ArgumentException(
                    $"Tensor name '{t.Name}' appears twice (#{firstIndex[t.Name]} and #{i}); names must be unique.",
                    nameof(tensors));
        }
    }
}

/// <summary>
/// Chooses the chunk size automatically: the one that wastes the fewest elements (the same idea as
/// ColossalAI Gemini's search, in place of PatrickStar's offline brute-force sweep).
/// </summary>
public static class ChunkSizeSearch
{
    /// <summary>
    /// The chunk size the engine picks when none is configured: <see cref="Best"/> (least waste, up to twice the
    /// largest tensor), but never more elements than a fifth of the device budget holds. Without that cap a small
    /// model lands in one or two huge chunks, and a module whose parameters straddle two of them needs both on the
    /// device at once, which leaves nothing for the activations or for moving chunks in and out.
    /// </summary>
    /// <param name="deviceBudgetBytes">The device budget; null when unknown (no cap).</param>
    /// <param name="elementBytes">Bytes per element of the compute-precision parameter chunks.</param>
    public static ChunkLayout ForDevice(IReadOnlyList<TensorSpec> tensors, long? deviceBudgetBytes, int elementBytes, int padToMultipleOf = 1)
    {
        ChunkLayout.Validate(tensors);
        long largest = tensors.Count == 0 ? 1 : Math.Max(1, tensors.Max(t => t.Numel));
        long smallest = RoundUp(largest, 1024);
        long max = 2 * smallest;
        if (deviceBudgetBytes is long budget)
            max = Math.Max(smallest, Math.Min(max, budget / 5 / elementBytes));
        return Best(tensors, max, padToMultipleOf: padToMultipleOf);
    }

    /// <summary>
    /// Tries every candidate chunk size and returns the layout with the
    /// least waste (<c>ChunkCount × ChunkSize − TotalElements</c>); on a tie, the smaller chunk size wins
    /// (smaller chunks move and evict at a finer grain).
    /// </summary>
    /// <remarks>Candidates are not packed one by one: a candidate's chunk count comes from binary searches
    /// over prefix sums, and candidates that could not win even with perfect packing are skipped. A
    /// GPT-2-XL-like list (579 tensors, ~78k candidates) takes tens of milliseconds.</remarks>
    /// <param name="tensors">Tensors in execution order, as for <see cref="ChunkLayout.Pack"/>.</param>
    /// <param name="maxChunkSize">Largest candidate. Default: twice the smallest candidate. Waste alone
    /// would always favour one chunk holding the whole model, which defeats chunk-based memory management;
    /// allowing up to about twice the largest tensor gives the search room (in practice the waste falls to well
    /// under 1%) while keeping chunks comparable to a layer group. Must not be below the largest tensor.</param>
    /// <param name="granularity">Candidates are the multiples of this from the largest tensor (rounded up)
    /// to <paramref name="maxChunkSize"/>; aligned sizes also suit the allocator.</param>
    /// <param name="padToMultipleOf">As for <see cref="ChunkLayout.Pack"/>; padding chunks count as waste.</param>
    /// <exception cref="ArgumentException">The tensors are invalid (see <see cref="ChunkLayout.Pack"/>),
    /// or no candidate lies between the largest tensor and <paramref name="maxChunkSize"/>.</exception>
    public static ChunkLayout Best(
        IReadOnlyList<TensorSpec> tensors, long? maxChunkSize = null, long granularity = 1024, int padToMultipleOf = 1)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(granularity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(padToMultipleOf);
        ChunkLayout.Validate(tensors);

        TensorSpec? largest = tensors.Count == 0 ? null : tensors.MaxBy(t => t.Numel);
        long largestNumel = largest?.Numel ?? 0;
        // A chunk must have room for at least one element, even when every tensor is empty.
        long smallest = RoundUp(Math.Max(largestNumel, 1), granularity);
        long max = maxChunkSize ?? 2 * smallest;

        if (max < largestNumel)
            throw new ArgumentException(
                $"The maximum chunk size ({max} elements) is below the largest tensor, '{largest!.Name}' " +
                $"({largestNumel} elements); tensors are never split.", nameof(maxChunkSize));
        if (max < smallest)
            throw new ArgumentException(
                $"No multiple of the granularity ({granularity}) lies between the largest tensor ({largestNumel} " +
                $"elements) and the maximum chunk size ({max} elements).", nameof(maxChunkSize));

        long[] prefix = PrefixSums(tensors);
        long total = prefix[^1];
        long bestSize = smallest, bestWaste = long.MaxValue;
        for (long size = smallest; size <= max; size += granularity)
        {
            // No packing needs fewer than ceil(total / size) chunks: skip sizes that cannot win even then.
            long atLeast = RoundUp((total + size - 1) / size, padToMultipleOf);
            if (atLeast * size - total >= bestWaste)
                continue;

            long chunks = RoundUp(CountChunks(prefix, size), padToMultipleOf);
            long waste = chunks * size - total;
            if (waste < bestWaste) // strict: on a tie the earlier, smaller size stays
            {
                bestWaste = waste;
                bestSize = size;
                if (waste == 0)
                    break; // nothing can beat it, and later ties would lose anyway
            }
        }

        return ChunkLayout.Pack(tensors, bestSize, padToMultipleOf);
    }

    /// <summary><c>prefix[i]</c> = elements of tensors 0..i-1; <c>prefix[^1]</c> is the total.</summary>
    private static long[] PrefixSums(IReadOnlyList<TensorSpec> tensors)
    {
        var prefix = new long[tensors.Count + 1];
        for (int i = 0; i < tensors.Count; i++)
            prefix[i + 1] = prefix[i] + tensors[i].Numel;
        return prefix;
    }

    /// <summary>
    /// The chunk count that <see cref="ChunkLayout.Pack"/> would produce (before padding), without building
    /// the layout. Greedy packing fills a chunk starting at tensor <c>i</c> with the longest run whose sum
    /// fits, so each chunk's end is a binary search in the prefix sums: O(chunks × log tensors) per
    /// candidate instead of O(tensors), which keeps thousands of candidates cheap.
    /// </summary>
    private static int CountChunks(long[] prefix, long chunkSize)
    {
        int n = prefix.Length - 1;
        int chunks = 0;
        for (int start = 0; start < n; chunks++)
            start = LastAtMost(prefix, start + 1, n, prefix[start] + chunkSize);
        return chunks;
    }

    /// <summary>The last index in <c>[lo, hi]</c> whose value is at most <paramref name="limit"/>;
    /// <c>values[lo]</c> is known to qualify (every tensor fits in a chunk).</summary>
    private static int LastAtMost(long[] values, int lo, int hi, long limit)
    {
        while (lo < hi)
        {
            int mid = lo + (hi - lo + 1) / 2;
            if (values[mid] <= limit)
                lo = mid;
            else
                hi = mid - 1;
        }
        return lo;
    }

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;
}
