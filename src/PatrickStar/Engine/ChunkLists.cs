using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The chunk lists that share one layout: chunk i of each list holds the same parameters (compute-precision copy,
/// fp32 master, momentum, variance, and fp32 gradients when accumulating). With data parallelism the lists are padded
/// to a multiple of the ranks, and chunk i is owned by rank i % N: only its owner keeps its state.
/// </summary>
internal sealed class ChunkLists
{
    public ChunkLists(ChunkLayout layout, int ranks, int rank, bool accumulate)
    {
        Layout = layout;
        Ranks = ranks;
        Rank = rank;
        Accumulating = accumulate;
        // Every rank builds the same layout; padding to a multiple of the ranks makes every group complete.
        Count = (layout.ChunkCount + ranks - 1) / ranks * ranks;
    }

    public ChunkLayout Layout { get; }
    public int Ranks { get; }
    public int Rank { get; }

    /// <summary>Chunks per list, padding included.</summary>
    public int Count { get; }

    /// <summary>True when gradients accumulate in their own fp32 chunks (accumulation steps > 1).</summary>
    public bool Accumulating { get; }

    public List<Chunk> Param { get; } = new();
    public List<Chunk> Master { get; } = new();
    public List<Chunk> Momentum { get; } = new();
    public List<Chunk> Variance { get; } = new();
    public List<Chunk> Gradient { get; } = new();

    public IEnumerable<List<Chunk>> Lists => [Param, Master, Momentum, Variance, Gradient];
    public IEnumerable<Chunk> All => Lists.SelectMany(list => list);

    /// <summary>The rank that keeps chunk <paramref name="index"/>'s optimizer state.</summary>
    public int OwnerOf(int index) => index % Ranks;

    /// <summary>True for the chunks whose master, momentum and variance this rank keeps (padding chunks hold nothing).</summary>
    public bool HasState(int index) => OwnerOf(index) == Rank && index < Layout.ChunkCount;

    /// <summary>Elements of chunk <paramref name="index"/> that hold parameters.</summary>
    public long Used(int index) => index < Layout.ChunkCount ? Layout.UsedPerChunk[index] : 0;

    /// <summary>Master, momentum and variance of one chunk index: they move together.</summary>
    public Chunk[] OptimizerGroup(int index) => [Master[index], Momentum[index], Variance[index]];

    /// <summary>
    /// Appends chunk <paramref name="index"/> to every list: with zeroed host payloads where this rank keeps its state,
    /// released (no payload) elsewhere.
    /// </summary>
    public void Add(int index, ScalarType computeType, TierMemory host)
    {
        AddReleased(index, computeType);
        if (HasState(index)) AttachState(index, host);
    }

    /// <summary>Bytes of the chunks this rank keeps: fp32 master, momentum and variance (and fp32 gradients when
    /// accumulating) plus the parameters at <paramref name="parameterElementBytes"/> per element.</summary>
    public long OwnedBytes(int parameterElementBytes)
    {
        long perIndex = Layout.ChunkSize * (4L * (Accumulating ? 4 : 3) + parameterElementBytes);
        return perIndex * (Count / Ranks);
    }

    /// <summary>Appends chunk <paramref name="index"/> to every list without payloads (<see cref="AttachState"/> gives them).</summary>
    public void AddReleased(int index, ScalarType computeType)
    {
        if (index != Param.Count) throw new InvalidOperationException($"chunk {index} added out of order: {Param.Count} chunks exist.");
        Param.Add(new Chunk(index, ChunkKind.Param, computeType, Layout.ChunkSize));
        Master.Add(new Chunk(index, ChunkKind.Master, ScalarType.Float32, Layout.ChunkSize));
        Momentum.Add(new Chunk(index, ChunkKind.Momentum, ScalarType.Float32, Layout.ChunkSize));
        Variance.Add(new Chunk(index, ChunkKind.Variance, ScalarType.Float32, Layout.ChunkSize));
        if (Accumulating) Gradient.Add(new Chunk(index, ChunkKind.Gradient, ScalarType.Float32, Layout.ChunkSize));
    }

    /// <summary>Gives chunk <paramref name="index"/> of every list a zeroed host payload (this rank keeps its state).</summary>
    public void AttachState(int index, TierMemory host)
    {
        foreach (var list in Lists)
        {
            if (index >= list.Count) continue; // no gradient list without accumulation
            var c = list[index];
            c.Attach(host.Acquire(c.DType, Layout.ChunkSize, $"{c.Kind} chunk {index}"), host);
            c.Payload!.zero_();
        }
    }

    /// <summary>The optimizer-state chunk of one kind.</summary>
    public Chunk StateChunk(ChunkKind kind, int index) => kind switch
    {
        ChunkKind.Master => Master[index],
        ChunkKind.Momentum => Momentum[index],
        ChunkKind.Variance => Variance[index],
        _ => throw new ArgumentException($"{kind} chunks hold no optimizer state; use Master, Momentum or Variance."),
    };

    /// <summary>Chunk bytes resident in a tier, by kind.</summary>
    public KindBytes BytesIn(Tier tier)
    {
        var bytes = new KindBytes();
        foreach (var c in All)
            if (c.OnDisk ? tier == Tier.Disk : c.Payload is not null && c.Tier!.Tier == tier) bytes[c.Kind] += c.Bytes;
        return bytes;
    }

    /// <summary>Bytes of chunk payloads held now, in memory and on disk (pooled buffers not counted).</summary>
    public long PayloadBytes => All.Where(c => c.Payload is not null || c.OnDisk).Sum(c => c.Bytes);

    /// <summary>Bytes of parameter chunks on <paramref name="tier"/> with a tensor computing.</summary>
    public long ComputingParamBytes(TierMemory tier) => Param.Where(c => c.Tier == tier && c.HasComputingTensor).Sum(c => c.Bytes);
}
