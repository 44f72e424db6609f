using System.Runtime.InteropServices;

namespace PatrickStar.Tiers;

/// <summary>A chunk file on a raw file descriptor: pread/pwrite (.NET's FileStream cannot open with O_DIRECT).</summary>
public sealed unsafe class PosixChunkFile : IChunkFile
{
    private int _fd;

    private PosixChunkFile(string path, int fd, bool direct)
    {
        Path = path;
        _fd = fd;
        Direct = direct;
    }

    public string Path { get; }
    public bool Direct { get; }

    /// <summary>Creates (or reopens) <paramref name="path"/>; throws <see cref="IOException"/> naming the file and the OS error.</summary>
    public static IChunkFile Open(string path, bool direct)
    {
        int fd = OpenRaw(path, direct, exclusive: false, out int errno);
        if (fd < 0) throw new IOException($"cannot open {path}{(direct ? " with O_DIRECT" : "")}: {LibC.ErrorText(errno)}");
        return new PosixChunkFile(path, fd, direct);
    }

    /// <summary>open(2) for read/write, created with mode 0600; -1 and the error number on failure.</summary>
    internal static int OpenRaw(string path, bool direct, bool exclusive, out int errno)
    {
        int flags = LibC.O_RDWR | LibC.O_CREAT | LibC.O_CLOEXEC | (direct ? LibC.O_DIRECT : 0) | (exclusive ? LibC.O_EXCL : 0);
        int fd = LibC.Open(path, flags, 0x180);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        return fd;
    }

    public int Preallocate(long length)
    {
        int error = LibC.PosixFallocate(_fd, 0, length);
        // A filesystem without fallocate support: size the file (sparse); a full disk then shows at the first write.
        if (error is LibC.EOPNOTSUPP or LibC.EINVAL)
            error = LibC.FTruncate(_fd, length) == 0 ? 0 : Marshal.GetLastPInvokeError();
        return error;
    }

    public int Read(long offset, nint buffer, long length) => Transfer(offset, (byte*)buffer, length, write: false);

    public int Write(long offset, nint buffer, long length) => Transfer(offset, (byte*)buffer, length, write: true);

    private int Transfer(long offset, byte* buffer, long length, bool write)
    {
        ObjectDisposedException.ThrowIf(_fd < 0, this);
        long done = 0;
        while (done < length)
        {
            nint n = write
                ? LibC.PWrite(_fd, buffer + done, (nuint)(length - done), offset + done)
                : LibC.PRead(_fd, buffer + done, (nuint)(length - done), offset + done);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == LibC.EINTR) continue;
                return errno;
            }
            if (n == 0) return write ? LibC.ENOSPC : LibC.EIO; // a short file: the preallocation was lost
            done += n;
        }
        return 0;
    }

    public void Dispose()
    {
        if (_fd < 0) return;
        LibC.Close(_fd);
        _fd = -1;
    }
}
