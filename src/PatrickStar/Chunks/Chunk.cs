using PatrickStar.Memory;
using static TorchSharp.torch;

namespace PatrickStar.Chunks;

/// <summary>Where a chunk is in its life: no payload, or a payload in one tier with or without a tensor computing.</summary>
public enum ChunkState
{
    /// <summary>No payload: its parameters point at nothing until it is fetched (a remote chunk between uses).</summary>
    Released,

    /// <summary>A payload in one tier, no tensor in use: it may move or be released.</summary>
    Hold,

    /// <summary>A tensor in it is in use by an operator: it must stay where it is.</summary>
    Compute,

    /// <summary>No payload in memory: the chunk's values are in its slot of the disk tier's file.</summary>
    OnDisk,
}

/// <summary>
/// One chunk of a list: its payload, the tier that owns the payload (exactly one at a time), and the parameters
/// whose slots it holds. The payload changes only through <see cref="Attach"/>, <see cref="Replace"/> and
/// <see cref="Detach"/>, which refuse what the chunk's state forbids.
/// </summary>
internal sealed class Chunk
{
    public Chunk(int index, ChunkKind kind, ScalarType dtype, long elements)
    {
        Index = index;
        Kind = kind;
        DType = dtype;
        Elements = elements;
    }

    public int Index { get; }
    public ChunkKind Kind { get; }
    public ScalarType DType { get; }
    public long Elements { get; }
    public Tensor? Payload { get; private set; }
    public TierMemory? Tier { get; private set; }
    public long LastUse { get; set; }
    public List<ManagedParameter> Tensors { get; } = new();
    public long Bytes => TierMemory.Bytes(DType, Elements);
    public bool HasComputingTensor => Tensors.Any(t => t.State == TensorState.Compute);

    public ChunkState State => OnDisk ? ChunkState.OnDisk : Payload is null ? ChunkState.Released : HasComputingTensor ? ChunkState.Compute : ChunkState.Hold;

    /// <summary>The values are in the disk tier's file, not in memory.</summary>
    public bool OnDisk { get; private set; }

    /// <summary>The disk slot holds what the payload holds: an eviction to disk needs no write (a clean chunk).</summary>
    public bool DiskCopyCurrent { get; private set; }

    /// <summary>The payload may now differ from the disk copy (gradients written into it, an update, a restore).</summary>
    public void MarkModified() => DiskCopyCurrent = false;

    /// <summary>Hold → OnDisk: the payload leaves memory (the caller wrote it to disk, or the disk copy was current).</summary>
    public Tensor ToDisk(string during)
    {
        var old = Detach(during);
        OnDisk = true;
        DiskCopyCurrent = true;
        return old;
    }

    /// <summary>OnDisk → Hold: the payload read from disk, owned by <paramref name="tier"/>; the disk copy is current.</summary>
    public void FromDisk(Tensor payload, TierMemory tier)
    {
        if (!OnDisk) throw new InvalidOperationException($"{Kind} chunk {Index} is not on disk.");
        OnDisk = false;
        Attach(payload, tier);
        DiskCopyCurrent = true;
    }

    /// <summary>Released → Hold: the chunk takes a payload owned by <paramref name="tier"/>.</summary>
    public void Attach(Tensor payload, TierMemory tier)
    {
        if (Payload is not null) throw new InvalidOperationException($"{Kind} chunk {Index} already has a payload.");
        Payload = payload;
        Tier = tier;
    }

    /// <summary>Hold → Hold elsewhere: the chunk takes a new payload (already filled) and returns the old one, which the caller gives back to its tier.</summary>
    public Tensor Replace(Tensor payload, TierMemory tier, string during)
    {
        RequireMovable(during);
        var old = Payload!;
        Payload = payload;
        Tier = tier;
        return old;
    }

    /// <summary>Throws unless the chunk may move now (no tensor in it computing).</summary>
    public void RequireMovable(string during)
    {
        if (HasComputingTensor)
            throw new InvalidOperationException($"chunk {Index} cannot move during {during}: a tensor in it is computing.");
    }

    /// <summary>Hold → Released: the chunk gives up its payload to the caller (who returns it to its tier).</summary>
    public Tensor Detach(string during)
    {
        if (HasComputingTensor)
            throw new InvalidOperationException($"{Kind} chunk {Index} cannot leave memory during {during}: a tensor in it is computing.");
        var old = Payload!;
        Payload = null;
        Tier = null;
        return old;
    }

    /// <summary>Any state → Released, unchecked: the engine is being disposed. Null when there was no payload.</summary>
    public Tensor? Drop()
    {
        OnDisk = false;
        var old = Payload;
        Payload = null;
        Tier = null;
        return old;
    }

    /// <summary>A 1-D view of one tensor's slot (dispose it).</summary>
    public Tensor Slot(TensorPlacement place) => Payload!.narrow(0, place.Offset, place.Numel);

    /// <summary>A 1-D view of the part of the chunk that holds parameters (dispose it).</summary>
    public Tensor UsedPart(long used) => Payload!.narrow(0, 0, used);
}
