using PatrickStar.Tiers;

namespace PatrickStar.Tests.Tiers;

/// <summary>Chunk files with injected behaviour around a real one: failures with a chosen OS error, slow reads, counting.</summary>
internal sealed class InjectedChunkFile(IChunkFile inner) : IChunkFile
{
    /// <summary>Error number returned by the preallocation / the Nth read / the Nth write (1-based; 0 = never).</summary>
    public int PreallocateError { get; init; }
    public int FailReadNumber { get; init; }
    public int FailWriteNumber { get; init; }
    public int Errno { get; init; } = 5; // EIO
    /// <summary>A read fills the first half of the buffer, sleeps this long, then fills the rest.</summary>
    public int ReadDelayMs { get; init; }
    /// <summary>A write stores the first half of the buffer, sleeps this long, then stores the rest.</summary>
    public int WriteDelayMs { get; init; }

    public int ReadCount, WriteCount;

    public string Path => inner.Path;
    public bool Direct => inner.Direct;

    public int Preallocate(long length) => PreallocateError != 0 ? PreallocateError : inner.Preallocate(length);

    public int Read(long offset, nint buffer, long length)
    {
        if (Interlocked.Increment(ref ReadCount) == FailReadNumber) return Errno;
        return InTwoHalves(inner.Read, offset, buffer, length, ReadDelayMs);
    }

    public int Write(long offset, nint buffer, long length)
    {
        if (Interlocked.Increment(ref WriteCount) == FailWriteNumber) return Errno;
        return InTwoHalves(inner.Write, offset, buffer, length, WriteDelayMs);
    }

    /// <summary>The transfer at once, or its first half, a pause, then the rest (so a torn transfer shows in the data).</summary>
    private static int InTwoHalves(Func<long, nint, long, int> transfer, long offset, nint buffer, long length, int delayMs)
    {
        if (delayMs == 0) return transfer(offset, buffer, length);
        long half = length / 2 / 4096 * 4096;
        int error = transfer(offset, buffer, half);
        Thread.Sleep(delayMs);
        return error != 0 ? error : transfer(offset + half, buffer + (nint)half, length - half);
    }

    public void Dispose() => inner.Dispose();
}

/// <summary>A temp directory with a disk tier on it whose chunk files are <see cref="InjectedChunkFile"/>s made by <paramref name="make"/>.</summary>
internal sealed class TierFixture : IDisposable
{
    public readonly TempDir Dir = new();
    public readonly DiskTier Tier;
    public readonly List<string> Log = new();
    public readonly List<InjectedChunkFile> Files = new();

    public TierFixture(DiskIoMode mode = DiskIoMode.Auto, Func<IChunkFile, InjectedChunkFile>? make = null, long budget = 1L << 30)
    {
        Tier = DiskTier.Open(new DiskTierOptions(Dir.Path, budget) { IoMode = mode }, Log.Add, (path, direct) =>
        {
            var file = (make ?? (f => new InjectedChunkFile(f)))(PosixChunkFile.Open(path, direct));
            Files.Add(file);
            return file;
        });
    }

    public void Dispose()
    {
        Tier.Dispose();
        Dir.Dispose();
    }

    /// <summary>Deterministic distinct contents for chunk <paramref name="index"/>.</summary>
    public static void Fill(StagingBuffer buffer, long bytes, int index)
    {
        var span = buffer.AsSpan<byte>(bytes);
        for (int i = 0; i < span.Length; i++) span[i] = (byte)(i * 31 + index * 7 + 1);
    }

    public static bool Holds(StagingBuffer buffer, long bytes, int index)
    {
        var span = buffer.AsSpan<byte>(bytes);
        for (int i = 0; i < span.Length; i++)
            if (span[i] != (byte)(i * 31 + index * 7 + 1)) return false;
        return true;
    }
}
