using PatrickStar.Chunks;
using PatrickStar.Training;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>Reads and writes the optimizer state this rank keeps, by chunk or by parameter (what checkpoints save and restore), wherever the chunks are: in memory or on disk.</summary>
internal sealed class ChunkStateAccess(ChunkLists chunks, IReadOnlyList<ManagedParameter> ordered, DiskPlacement? disk = null)
{
    private readonly Dictionary<string, ManagedParameter> byName = ordered.ToDictionary(mp => mp.Name, StringComparer.Ordinal);

    /// <summary>Names of the parameters whose state this rank keeps, in chunk order.</summary>
    public IReadOnlyList<string> ParameterNames => ordered.Where(p => chunks.HasState(p.Place.Chunk)).Select(p => p.Name).ToList();

    /// <summary>A host fp32 copy of the used part of one chunk of master weights, momentum or variance.</summary>
    public Tensor ReadChunk(ChunkKind kind, int index)
    {
        using var _ = no_grad();
        using var values = disk.ReadValues(chunks.StateChunk(kind, index));
        using var used = values.narrow(0, 0, chunks.Used(index));
        return used.to(ScalarType.Float32, CPU, copy: true);
    }

    /// <summary>Overwrites the used part of one chunk of master weights, momentum or variance; masters also refresh the parameters.</summary>
    public void WriteChunk(ChunkKind kind, int index, Tensor values)
    {
        long used = chunks.Used(index);
        if (values.numel() != used)
            throw new ArgumentException($"{kind} chunk {index} holds {used:N0} elements, but {values.numel():N0} were given.");
        using var _ = no_grad();
        var chunk = chunks.StateChunk(kind, index);
        using var stateValues = disk.ReadValues(chunk);
        using var target = stateValues.narrow(0, 0, used);
        using var flat = values.reshape(-1);
        target.copy_(flat);
        disk.WroteValues(chunk, stateValues);
        if (kind == ChunkKind.Master)
        {
            using var paramValues = disk.ReadValues(chunks.Param[index]);
            using (var param = paramValues.narrow(0, 0, used)) param.copy_(target);
            disk.WroteValues(chunks.Param[index], paramValues);
            foreach (var mp in chunks.Param[index].Tensors) mp.Gradient.Clear();
        }
    }

    /// <summary>A host fp32 copy of one parameter's master weight, momentum or variance, in the parameter's shape.</summary>
    public Tensor ReadState(string name, StateKind kind)
    {
        var mp = ByName(name);
        using var _ = no_grad();
        using var values = disk.ReadValues(chunks.StateChunk(ChunkOf(kind), mp.Place.Chunk));
        using var slot = values.narrow(0, mp.Place.Offset, mp.Place.Numel);
        using var shaped = slot.view(mp.Shape);
        return shaped.to(ScalarType.Float32, CPU, copy: true);
    }

    /// <summary>Overwrites one parameter's master weight (and its compute-precision copy), momentum or variance.</summary>
    public void WriteState(string name, StateKind kind, Tensor value)
    {
        var mp = ByName(name);
        if (!value.shape.SequenceEqual(mp.Shape))
            throw new ArgumentException($"{name}: {kind} has shape [{string.Join(", ", mp.Shape)}], but [{string.Join(", ", value.shape)}] was given.");
        using var _ = no_grad();
        var chunk = chunks.StateChunk(ChunkOf(kind), mp.Place.Chunk);
        using var values = disk.ReadValues(chunk);
        using var slot = values.narrow(0, mp.Place.Offset, mp.Place.Numel);
        using var flat = value.reshape(-1);
        slot.copy_(flat);
        disk.WroteValues(chunk, values);
        if (kind == StateKind.Master)
        {
            var paramChunk = chunks.Param[mp.Place.Chunk];
            using var paramValues = disk.ReadValues(paramChunk);
            using (var param = paramValues.narrow(0, mp.Place.Offset, mp.Place.Numel)) param.copy_(slot);
            disk.WroteValues(paramChunk, paramValues);
            mp.Gradient.Clear();
        }
    }

    private static ChunkKind ChunkOf(StateKind kind) => kind switch
    {
        StateKind.Master => ChunkKind.Master,
        StateKind.Momentum => ChunkKind.Momentum,
        _ => ChunkKind.Variance,
    };

    private ManagedParameter ByName(string name)
    {
        if (!byName.TryGetValue(name, out var mp))
            throw new ArgumentException($"the engine manages no parameter named '{name}'.");
        if (!chunks.HasState(mp.Place.Chunk))
            throw new ArgumentException($"{name} lives in chunk {mp.Place.Chunk}, which rank {chunks.OwnerOf(mp.Place.Chunk)} owns; rank {chunks.Rank} holds no state for it.");
        return mp;
    }
}
