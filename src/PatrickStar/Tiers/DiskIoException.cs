namespace PatrickStar.Tiers;

/// <summary>
/// A disk read or write of a chunk failed mid-run (full disk, I/O error). Carries the chunk, the file and the OS error;
/// the message is one line meant for the user. The run must stop: the chunk's data on disk is not trustworthy.
/// </summary>
public sealed class DiskIoException : IOException
{
    public DiskIoException(string operation, string chunk, string filePath, int errno, string osError)
        : base($"disk tier: {operation} of chunk {chunk} in {filePath} failed: {osError}; " +
               (errno == LibC.ENOSPC ? "free space on that filesystem or point --disk-dir elsewhere." : "check the device (dmesg) or point --disk-dir elsewhere."))
    {
        Operation = operation;
        Chunk = chunk;
        FilePath = filePath;
        Errno = errno;
        OsError = osError;
    }

    public string Operation { get; }
    public string Chunk { get; }
    public string FilePath { get; }
    public int Errno { get; }
    public string OsError { get; }
}

/// <summary>The disk tier cannot start with these settings (missing or unwritable directory, too little room, a live other run).
/// One-line message naming the problem and the fix.</summary>
public sealed class DiskTierRefusedException(string message) : Exception(message);
