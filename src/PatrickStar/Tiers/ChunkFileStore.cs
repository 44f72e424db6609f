namespace PatrickStar.Tiers;

/// <summary>
/// The disk copies of one chunk kind (param, master, momentum, ...): one preallocated file, chunk i in slot i at offset
/// i x <see cref="SlotBytes"/>. One file per kind rather than per chunk: every chunk of a kind has the same size, so fixed
/// slots need no allocator; a few descriptors instead of thousands; one fallocate reserves the kind's whole extent up front
/// (a full disk shows at start, not mid-run); and the optimizer's pass over chunk 0..N-1 is a sequential scan of one file.
/// Reads and writes move whole slots, or an aligned range within one (the optimizer streams chunks in slices): offsets and
/// lengths are multiples of 4096 bytes, as O_DIRECT requires. They throw <see cref="DiskIoException"/>.
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

    public void Read(int index, StagingBuffer into) => Transfer(index, 0, SlotBytes, into, write: false);

    public void Write(int index, StagingBuffer from) => Transfer(index, 0, SlotBytes, from, write: true);

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> within chunk <paramref name="index"/>'s slot.</summary>
    public void Read(int index, long offset, long length, StagingBuffer into) => Transfer(index, offset, length, into, write: false);

    public void Write(int index, long offset, long length, StagingBuffer from) => Transfer(index, offset, length, from, write: true);

    /// <summary>Throws unless <paramref name="index"/> is a chunk of this store and <paramref name="buffer"/> holds a whole slot.</summary>
    public void CheckTransfer(int index, StagingBuffer buffer) => CheckTransfer(index, 0, SlotBytes, buffer);

    /// <summary>Throws unless the range is an aligned part of chunk <paramref name="index"/>'s slot that <paramref name="buffer"/> can hold.</summary>
    public void CheckTransfer(int index, long offset, long length, StagingBuffer buffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Chunks);
        if (offset < 0 || length <= 0 || offset + length > SlotBytes || offset % StagingBuffer.Alignment != 0 || length % StagingBuffer.Alignment != 0)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"{length} B at {offset} is not an aligned range of chunk {ChunkName(index)}'s {SlotBytes} B slot.");
        if (buffer.Capacity < length)
            throw new ArgumentException(length == SlotBytes
                ? $"A {buffer.Capacity} B buffer cannot hold chunk {ChunkName(index)} ({SlotBytes} B)."
                : $"A {buffer.Capacity} B buffer cannot hold {length} B of chunk {ChunkName(index)}.", nameof(buffer));
    }

    private void Transfer(int index, long offset, long length, StagingBuffer buffer, bool write)
    {
        CheckTransfer(index, offset, length, buffer);
        long at = index * SlotBytes + offset;
        int error = write ? _file.Write(at, buffer.Address, length) : _file.Read(at, buffer.Address, length);
        if (error != 0)
            throw new DiskIoException(write ? "write" : "read", ChunkName(index), _file.Path, error, LibC.ErrorText(error));
    }

    public void Dispose() => _file.Dispose();
}
