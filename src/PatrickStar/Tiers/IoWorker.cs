using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace PatrickStar.Tiers;

/// <summary>
/// The disk tier's I/O thread: one dedicated thread serving a bounded FIFO queue of chunk reads (read-ahead, issued for
/// the chunks a schedule needs next) and writes (write-behind of evicted dirty chunks), so disk traffic overlaps compute.
/// FIFO order makes a read queued after a write of the same chunk see the written data; a read of a chunk whose write is
/// still queued is served at once from the write's buffer. Clean evictions are not written. The first I/O error stops
/// the worker: every later request, and the next call of the consumer, throws that <see cref="DiskIoException"/>.
/// </summary>
public sealed class IoWorker : IDisposable
{
    private readonly BlockingCollection<Action> _queue;
    private readonly Thread _thread;
    private readonly Dictionary<(ChunkFileStore Store, int Index, long Offset, long Length), PendingWrite> _pendingWrites = new();
    private readonly object _gate = new();
    private Exception? _fault;

    private sealed record PendingWrite(StagingBuffer Buffer);

    public IoWorker(int queueCapacity = 16, IoStatistics? statistics = null)
    {
        _queue = new BlockingCollection<Action>(new ConcurrentQueue<Action>(), queueCapacity);
        Statistics = statistics ?? new IoStatistics();
        _thread = new Thread(Serve) { IsBackground = true, Name = "pstar disk I/O" };
        _thread.Start();
    }

    public IoStatistics Statistics { get; }

    /// <summary>Queues a read of chunk <paramref name="index"/> into <paramref name="into"/>, which belongs to the worker until
    /// the read completes. Blocks only while the queue is full.</summary>
    public ChunkRead Read(ChunkFileStore store, int index, StagingBuffer into) => Read(store, index, 0, store.SlotBytes, into);

    /// <summary>Queues a read of <paramref name="length"/> bytes at <paramref name="offset"/> within chunk <paramref name="index"/>'s
    /// slot (a slice; aligned) into the start of <paramref name="into"/>.</summary>
    public unsafe ChunkRead Read(ChunkFileStore store, int index, long offset, long length, StagingBuffer into)
    {
        ThrowIfFaulted();
        store.CheckTransfer(index, offset, length, into); // here, not on the I/O thread, where it would stop the worker
        var read = new ChunkRead(Name(store, index, offset, length), Statistics);
        lock (_gate)
        {
            // Only a write of the same range serves a read; any other overlap is ordered by the FIFO queue.
            if (_pendingWrites.TryGetValue((store, index, offset, length), out var pending))
            {
                // The write's buffer is only read by the worker meanwhile, so copying from it is safe.
                NativeMemory.Copy(pending.Buffer.Pointer, into.Pointer, (nuint)length);
                Statistics.AddServedFromWrite();
                read.Complete(into);
                return read;
            }
        }
        Enqueue(() =>
        {
            long start = Stopwatch.GetTimestamp();
            store.Read(index, offset, length, into);
            Statistics.AddRead(length, Stopwatch.GetTimestamp() - start);
            read.Complete(into);
        }, read.Fail);
        return read;
    }

    /// <summary>
    /// Hands over an evicted chunk's buffer. Dirty: written behind, then <paramref name="release"/>d by the I/O thread.
    /// Clean (the disk copy is current): released at once, nothing written.
    /// </summary>
    public void Evict(ChunkFileStore store, int index, StagingBuffer buffer, bool dirty, Action<StagingBuffer> release) =>
        Evict(store, index, 0, store.SlotBytes, buffer, dirty, release);

    /// <summary><see cref="Evict(ChunkFileStore, int, StagingBuffer, bool, Action{StagingBuffer})"/> for a slice: the buffer's
    /// first <paramref name="length"/> bytes go to <paramref name="offset"/> within the chunk's slot.</summary>
    public void Evict(ChunkFileStore store, int index, long offset, long length, StagingBuffer buffer, bool dirty, Action<StagingBuffer> release)
    {
        ThrowIfFaulted();
        store.CheckTransfer(index, offset, length, buffer);
        if (!dirty)
        {
            Statistics.AddCleanSkipped();
            release(buffer);
            return;
        }
        var key = (store, index, offset, length);
        var pending = new PendingWrite(buffer);
        lock (_gate) _pendingWrites[key] = pending;
        int finished = 0;
        void Finish() // once, whether the write succeeded, failed, or was skipped after an earlier fault
        {
            if (Interlocked.Exchange(ref finished, 1) == 1) return;
            lock (_gate)
                if (_pendingWrites.TryGetValue(key, out var current) && current == pending) _pendingWrites.Remove(key);
            release(buffer);
        }
        Enqueue(() =>
        {
            long start = Stopwatch.GetTimestamp();
            try { store.Write(index, offset, length, buffer); }
            finally { Finish(); }
            Statistics.AddWrite(length, Stopwatch.GetTimestamp() - start);
        }, _ => Finish());
    }

    /// <summary>Waits until every request queued so far has been served (the time blocked counts as the consumer's wait);
    /// throws the worker's fault if any.</summary>
    public void Flush()
    {
        var done = new ManualResetEventSlim();
        Enqueue(done.Set, _ => done.Set());
        long start = Stopwatch.GetTimestamp();
        done.Wait();
        Statistics.AddWait(Stopwatch.GetTimestamp() - start);
        done.Dispose();
        ThrowIfFaulted();
    }

    /// <summary>"master#3", or "master#3[+offset B]" for a slice.</summary>
    private static string Name(ChunkFileStore store, int index, long offset, long length) =>
        offset == 0 && length == store.SlotBytes ? store.ChunkName(index) : $"{store.ChunkName(index)}[{length} B at {offset}]";

    public void ThrowIfFaulted()
    {
        var fault = Volatile.Read(ref _fault);
        if (fault is not null) throw fault is DiskIoException d ? d : new IOException(fault.Message, fault);
    }

    /// <summary>Queues <paramref name="work"/>; after a fault it is not run and <paramref name="fail"/> gets the fault instead.</summary>
    private void Enqueue(Action work, Action<Exception> fail)
    {
        _queue.Add(() =>
        {
            var fault = Volatile.Read(ref _fault);
            if (fault is not null)
            {
                fail(fault);
                return;
            }
            try { work(); }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _fault, e, null);
                fail(e);
            }
        });
    }

    private void Serve()
    {
        foreach (var item in _queue.GetConsumingEnumerable())
        {
            // An exception escaping this thread would end the process; a failing callback stops the worker instead.
            try { item(); }
            catch (Exception e) { Interlocked.CompareExchange(ref _fault, e, null); }
        }
    }

    /// <summary>Serves what is queued (writes included), then stops the thread.</summary>
    public void Dispose()
    {
        if (_queue.IsAddingCompleted) return;
        _queue.CompleteAdding();
        _thread.Join();
        _queue.Dispose();
    }
}
