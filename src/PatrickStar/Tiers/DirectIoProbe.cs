namespace PatrickStar.Tiers;

/// <summary>The I/O mode chosen for a directory and the one-line start-up message that says so and why.</summary>
public readonly record struct DirectIoChoice(bool Direct, string Message);

/// <summary>
/// Decides O_DIRECT or buffered I/O for a directory by trying it: open a probe file with O_DIRECT (tmpfs refuses with
/// EINVAL) and write then read one aligned block (some filesystems accept the flag but refuse the I/O).
/// </summary>
public static class DirectIoProbe
{
    public static DirectIoChoice Choose(string directory, string probePath, DiskIoMode mode)
    {
        if (mode == DiskIoMode.Buffered)
            return new(false, $"disk tier: buffered I/O in {directory} (requested).");
        int error = TryDirect(probePath);
        if (error == 0)
            return new(true, $"disk tier: O_DIRECT I/O in {directory} (page cache bypassed).");
        if (mode == DiskIoMode.Direct)
            throw new DiskTierRefusedException(
                $"disk_dir '{directory}' does not allow O_DIRECT ({LibC.ErrorText(error)}); use buffered I/O or a directory on a disk filesystem.");
        return new(false, $"disk tier: buffered I/O in {directory}: the filesystem refuses O_DIRECT ({LibC.ErrorText(error)}).");
    }

    /// <summary>0 if an O_DIRECT open, write and read of one block worked; otherwise the error number.</summary>
    private static unsafe int TryDirect(string probePath)
    {
        int fd = PosixChunkFile.OpenRaw(probePath, direct: true, exclusive: false, out int errno);
        if (fd < 0) return errno;
        try
        {
            using var block = new StagingBuffer(StagingBuffer.Alignment);
            nint n = LibC.PWrite(fd, block.Pointer, StagingBuffer.Alignment, 0);
            if (n != StagingBuffer.Alignment) return n < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : LibC.EIO;
            n = LibC.PRead(fd, block.Pointer, StagingBuffer.Alignment, 0);
            if (n != StagingBuffer.Alignment) return n < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : LibC.EIO;
            return 0;
        }
        finally
        {
            LibC.Close(fd);
            File.Delete(probePath);
        }
    }
}
