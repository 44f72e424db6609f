namespace PatrickStar.Tiers;

/// <summary>
/// The disk copies of one chunk kind (param, master, momentum, ...): one preallocated file, chunk i in slot i at offset
/// i x <see cref="SlotBytes"/>. One file per kind rather than per chunk: every chunk of a kind has the same size, so fixed
/// slots need no allocator; a few descriptors instead of thousands; one fallocate reserves the kind's whole extent up front
/// (a full disk shows at start, not mid-run); and the optimizer's pass over chunk 0..N-1 is a sequential scan of one file.
/// Reads and writes move whole slots (a multiple of 4096 bytes, as O_DIRECT requires) and throw <see cref="DiskIoException"/>.
/// Not thread-safe by itself: the <see cref="IoWorker"/> thread is its one caller during a run.
/// </summary>
public sealed class ChunkFileStore : IDisposable
{
    private readonly IChunkFile _file;

    internal ChunkFileStore(string kind, IChunkFile file, long chunkBytes, int chunks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunks);
        Kind = kind;
        _file = file;
        ChunkBytes = chunkBytes;
        SlotBytes = StagingBuffer.RoundUp(chunkBytes);
        Chunks = chunks;
        int error = file.Preallocate(FileBytes);
        if (error != 0) throw new DiskIoException($"preallocation of {FileBytes} B", $"{kind}#0..{chunks - 1}", file.Path, error, LibC.ErrorText(error));
    }

    public string Kind { get; }
    public string FilePath => _file.Path;
    public bool Direct => _file.Direct;
    /// <summary>Payload bytes of one chunk.</summary>
    public long ChunkBytes { get; }
    /// <summary>Bytes one chunk occupies in the file and moves per read or write: <see cref="ChunkBytes"/> rounded up to 4096.</summary>
    public long SlotBytes { get; }
    public int Chunks { get; }
    public long FileBytes => SlotBytes * Chunks;

    /// <summary>"master#3": how errors and logs name a chunk.</summary>
    public string ChunkName(int index) => $"{Kind}#{index}";

    public void Read(int index, StagingBuffer into) => Transfer(index, into, write: false);

    public void Write(int index, StagingBuffer from) => Transfer(index, from, write: true);

    /// <summary>Throws unless <paramref name="index"/> is a chunk of this store and <paramref name="buffer"/> holds a whole slot.</summary>
    public void CheckTransfer(int index, StagingBuffer buffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Chunks);
        if (buffer.Capacity < SlotBytes)
            throw new ArgumentException($"A {buffer.Capacity} B buffer cannot hold chunk {ChunkName(index)} ({SlotBytes} B).", nameof(buffer));
    }

    private void Transfer(int index, StagingBuffer buffer, bool write)
    {
        CheckTransfer(index, buffer);
        long offset = index * SlotBytes;
        int error = write ? _file.Write(offset, buffer.Address, SlotBytes) : _file.Read(offset, buffer.Address, SlotBytes);
        if (error != 0)
            throw new DiskIoException(write ? "write" : "read", ChunkName(index), _file.Path, error, LibC.ErrorText(error));
    }

    public void Dispose() => _file.Dispose();
}
