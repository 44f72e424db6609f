namespace PatrickStar.Tiers;

/// <summary>
/// One open chunk file. Every method returns 0 or the OS error number, never throws for an I/O error, so the caller
/// (<see cref="ChunkFileStore"/>) can name the chunk in its exception; tests inject a failing implementation.
/// With O_DIRECT, offsets, lengths and buffer addresses are multiples of <see cref="StagingBuffer.Alignment"/>.
/// </summary>
public interface IChunkFile : IDisposable
{
    string Path { get; }
    /// <summary>Opened with O_DIRECT (no page cache).</summary>
    bool Direct { get; }
    /// <summary>Reserves <paramref name="length"/> bytes on the filesystem, so a full disk shows at start, not mid-run.</summary>
    int Preallocate(long length);
    int Read(long offset, nint buffer, long length);
    int Write(long offset, nint buffer, long length);
}

/// <summary>Opens a chunk file: the real one is <see cref="PosixChunkFile.Open"/>.</summary>
public delegate IChunkFile ChunkFileOpener(string path, bool direct);
