using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace PatrickStar.Benchmarks;

/// <summary>
/// STREAM-style bandwidth: bytes read plus bytes written per second (write-allocate traffic not counted).
/// <paramref name="UpdateBytesPerSecond"/> is the in-place update a += s·b (read two arrays, write one of them back):
/// the access pattern of an optimizer step, which writes only what it read and so pays no write-allocate reads.
/// </summary>
public sealed record BandwidthResult(double CopyBytesPerSecond, double TriadBytesPerSecond, double UpdateBytesPerSecond);

/// <summary>
/// This machine's memory bandwidth, measured the way STREAM does (copy: a = b; triad: a = b + s·c) over
/// arrays far larger than the caches, on every core, so that a memory-bound kernel such as the Adam step can
/// be compared with what the memory system delivers.
/// </summary>
public static unsafe class MemoryBandwidth
{
    private const int Tile = 1 << 16;

    public static BandwidthResult Measure(long elements, int warmup = 1, int reps = 5)
    {
        float* a = Allocate(elements), b = Allocate(elements), c = Allocate(elements);
        try
        {
            Fill(a, elements, 0f);
            Fill(b, elements, 1f);
            Fill(c, elements, 2f);
            var copy = Benchmarks.Measure.Repeat(warmup, reps, () => ForTiles(elements, (from, to) => Copy(a, b, from, to)));
            var triad = Benchmarks.Measure.Repeat(warmup, reps, () => ForTiles(elements, (from, to) => Triad(a, b, c, 3f, from, to)));
            var update = Benchmarks.Measure.Repeat(warmup, reps, () => ForTiles(elements, (from, to) => Triad(a, a, c, 1e-3f, from, to)));
            return new BandwidthResult(
                2.0 * 4 * elements / Benchmarks.Measure.Median(copy),
                3.0 * 4 * elements / Benchmarks.Measure.Median(triad),
                3.0 * 4 * elements / Benchmarks.Measure.Median(update));
        }
        finally
        {
            NativeMemory.Free(a);
            NativeMemory.Free(b);
            NativeMemory.Free(c);
        }
    }

    private static float* Allocate(long elements) => (float*)NativeMemory.AlignedAlloc((nuint)(elements * 4), 64);

    private static void Fill(float* p, long n, float value) => ForTiles(n, (from, to) => new Span<float>(p + from, (int)(to - from)).Fill(value));

    private static void ForTiles(long n, Action<long, long> body)
    {
        long tiles = (n + Tile - 1) / Tile;
        Parallel.For(0L, tiles, t => body(t * Tile, Math.Min(n, (t + 1) * Tile)));
    }

    private static void Copy(float* a, float* b, long from, long to)
    {
        long i = from;
        for (; i + Vector256<float>.Count <= to; i += Vector256<float>.Count)
            Vector256.Store(Vector256.Load(b + i), a + i);
        for (; i < to; i++) a[i] = b[i];
    }

    private static void Triad(float* a, float* b, float* c, float s, long from, long to)
    {
        long i = from;
        var vs = Vector256.Create(s);
        for (; i + Vector256<float>.Count <= to; i += Vector256<float>.Count)
            Vector256.Store(Vector256.Load(b + i) + vs * Vector256.Load(c + i), a + i);
        for (; i < to; i++) a[i] = b[i] + s * c[i];
    }
}
