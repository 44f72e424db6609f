namespace PatrickStar.Tiers;

/// <summary>
/// The disk tier of one run: validates the directory, claims it (<see cref="DiskDirLock"/>, cleaning a dead run's files),
/// chooses O_DIRECT or buffered I/O, and creates preallocated <see cref="ChunkFileStore"/>s within the budget. Dispose
/// (or process exit, or an immediate exit on a second signal, as fallbacks) removes every file it made. Start-up refusals throw <see cref="DiskTierRefusedException"/>.
/// </summary>
public sealed class DiskTier : IDisposable
{
    private readonly DiskDirLock _lock;
    private readonly ChunkFileOpener _open;
    private readonly List<ChunkFileStore> _stores = new();
    private readonly EventHandler _onExit;
    private readonly IDisposable _onImmediateExit;
    private bool _disposed;

    private DiskTier(DiskTierOptions options, DiskDirLock claim, DirectIoChoice io, ChunkFileOpener open, List<string> messages)
    {
        Options = options;
        _lock = claim;
        Direct = io.Direct;
        _open = open;
        StartupMessages = messages;
        _onExit = (_, _) => Dispose();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
        // A second Ctrl-C ends the process with _exit, which skips ProcessExit: remove the files there too.
        _onImmediateExit = PatrickStar.Runtime.ImmediateExit.Register(claim.Dispose);
    }

    public DiskTierOptions Options { get; }
    public bool Direct { get; }
    /// <summary>What start-up found: the I/O mode line, and a line per dead run cleaned.</summary>
    public IReadOnlyList<string> StartupMessages { get; }
    public long ReservedBytes => _stores.Sum(s => s.FileBytes);
    public IReadOnlyList<ChunkFileStore> Stores => _stores;

    /// <param name="log">Receives each start-up message as it happens (they are also kept in <see cref="StartupMessages"/>).</param>
    /// <param name="open">Opens chunk files; null for the real ones. Tests inject failing or slow files here.</param>
    /// <param name="availableBytes">Free bytes of a directory's filesystem; null for statvfs.</param>
    public static DiskTier Open(DiskTierOptions options, Action<string>? log = null, ChunkFileOpener? open = null,
                                Func<string, long>? availableBytes = null)
    {
        options.ValidateValues();
        options.ValidateDirectoryExists();
        var messages = new List<string>();
        void Say(string line)
        {
            messages.Add(line);
            log?.Invoke(line);
        }
        var claim = DiskDirLock.Acquire(options.Directory, Say); // removes a dead run's files before space is counted
        try
        {
            options.ValidateFreeSpace(0, availableBytes);
            var io = DirectIoProbe.Choose(options.Directory, claim.FilePath("probe.tmp"), options.IoMode);
            Say(io.Message);
            return new DiskTier(options, claim, io, open ?? PosixChunkFile.Open, messages);
        }
        catch
        {
            claim.Dispose();
            throw;
        }
    }

    /// <summary>A preallocated file for <paramref name="chunks"/> chunks of <paramref name="chunkBytes"/> bytes of one kind
    /// ("master"); refused beyond the budget, with bytes needed vs left.</summary>
    public ChunkFileStore CreateStore(string kind, long chunkBytes, int chunks)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_stores.Any(s => s.Kind == kind)) throw new ArgumentException($"The disk tier already has a '{kind}' store.", nameof(kind));
        long bytes = StagingBuffer.RoundUp(chunkBytes) * chunks, left = Options.BudgetBytes - ReservedBytes;
        if (bytes > left)
            throw new DiskTierRefusedException(
                $"disk_memory is too small: the {chunks} '{kind}' chunks need {bytes} B on disk, {left} B of the {Options.BudgetBytes} B budget are left; raise --disk-memory.");
        var file = _open(_lock.FilePath(kind + ".chunks"), Direct);
        try
        {
            var store = new ChunkFileStore(kind, file, chunkBytes, chunks);
            _stores.Add(store);
            return store;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        AppDomain.CurrentDomain.ProcessExit -= _onExit;
        _onImmediateExit.Dispose();
        foreach (var s in _stores) s.Dispose();
        _lock.Dispose();
    }
}
