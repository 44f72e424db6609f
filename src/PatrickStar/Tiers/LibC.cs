using System.Runtime.InteropServices;

namespace PatrickStar.Tiers;

/// <summary>The few POSIX calls the disk tier needs that .NET does not expose (O_DIRECT, pread/pwrite on a raw fd, statvfs).</summary>
internal static unsafe class LibC
{
    // Linux x86_64 / aarch64 values.
    public const int O_RDWR = 0x2, O_CREAT = 0x40, O_EXCL = 0x80, O_CLOEXEC = 0x80000, O_DIRECT = 0x4000;
    public const int EINTR = 4, EIO = 5, EINVAL = 22, ENOSPC = 28, EOPNOTSUPP = 95;

    [DllImport("libc", EntryPoint = "open", SetLastError = true)] public static extern int Open(string path, int flags, int mode);
    [DllImport("libc", EntryPoint = "close", SetLastError = true)] public static extern int Close(int fd);
    [DllImport("libc", EntryPoint = "pread", SetLastError = true)] public static extern nint PRead(int fd, void* buffer, nuint count, long offset);
    [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)] public static extern nint PWrite(int fd, void* buffer, nuint count, long offset);
    [DllImport("libc", EntryPoint = "ftruncate", SetLastError = true)] public static extern int FTruncate(int fd, long length);
    /// <summary>Returns the error number itself (0 on success); errno is not set.</summary>
    [DllImport("libc", EntryPoint = "posix_fallocate")] public static extern int PosixFallocate(int fd, long offset, long length);
    [DllImport("libc", EntryPoint = "fdatasync", SetLastError = true)] public static extern int FDataSync(int fd);
    /// <summary>Returns the error number itself (0 on success).</summary>
    [DllImport("libc", EntryPoint = "posix_fadvise")] public static extern int PosixFadvise(int fd, long offset, long length, int advice);
    public const int POSIX_FADV_DONTNEED = 4;
    [DllImport("libc", EntryPoint = "statvfs", SetLastError = true)] private static extern int StatVfs(string path, StatVfsBuffer* buffer);

    [StructLayout(LayoutKind.Sequential)]
    private struct StatVfsBuffer
    {
        public ulong BlockSize, FragmentSize, Blocks, FreeBlocks, AvailableBlocks, Files, FreeFiles, AvailableFiles, FsId, Flags, NameMax;
        public fixed int Spare[6];
    }

    /// <summary>Bytes an unprivileged process may still allocate on the filesystem holding <paramref name="path"/>.</summary>
    public static long AvailableBytes(string path)
    {
        StatVfsBuffer s;
        if (StatVfs(path, &s) != 0) throw new IOException($"statvfs({path}) failed: {ErrorText(Marshal.GetLastPInvokeError())}");
        return (long)Math.Min((ulong)long.MaxValue, s.AvailableBlocks * s.FragmentSize);
    }

    /// <summary>"No space left on device (errno 28)".</summary>
    public static string ErrorText(int errno) => $"{Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
}
