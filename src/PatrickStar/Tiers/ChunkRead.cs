using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace PatrickStar.Tiers;

/// <summary>
/// A chunk read in flight. Its buffer is reachable only once the read has completed: through <see cref="Wait"/> (which
/// blocks and counts the wait in the statistics), <c>await</c>, or <see cref="Buffer"/> (which throws before completion).
/// A failed read rethrows its <see cref="DiskIoException"/> to whoever asks for the buffer.
/// </summary>
public sealed class ChunkRead
{
    private readonly TaskCompletionSource<StagingBuffer> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly IoStatistics _statistics;

    internal ChunkRead(string chunk, IoStatistics statistics)
    {
        Chunk = chunk;
        _statistics = statistics;
    }

    public string Chunk { get; }
    public bool IsCompleted => _done.Task.IsCompleted;

    public StagingBuffer Buffer => _done.Task.IsCompletedSuccessfully
        ? _done.Task.Result
        : _done.Task.IsFaulted ? Wait() : throw new InvalidOperationException($"The read of chunk {Chunk} has not completed; Wait() for it first.");

    public StagingBuffer Wait()
    {
        if (!_done.Task.IsCompleted)
        {
            long start = Stopwatch.GetTimestamp();
            ((IAsyncResult)_done.Task).AsyncWaitHandle.WaitOne();
            _statistics.AddWait(Stopwatch.GetTimestamp() - start);
        }
        return _done.Task.GetAwaiter().GetResult(); // the DiskIoException itself, not an AggregateException
    }

    public TaskAwaiter<StagingBuffer> GetAwaiter() => _done.Task.GetAwaiter();

    internal void Complete(StagingBuffer buffer) => _done.SetResult(buffer);
    internal void Fail(Exception error) => _done.SetException(error);
}
