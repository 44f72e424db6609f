using System.Collections.Concurrent;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// The read-ahead's copies on a CPU device: one dedicated thread runs <c>copy_</c> while the training thread computes.
/// Copies are served in the order they were started. The tensors stay owned by the caller; the thread creates none.
/// </summary>
public sealed class WorkerThreadChunkCopy : IAsyncChunkCopy
{
    private readonly BlockingCollection<Copy> queue = new();
    private readonly Thread thread;

    public WorkerThreadChunkCopy()
    {
        thread = new Thread(Serve) { IsBackground = true, Name = "pstar chunk read-ahead" };
        thread.Start();
    }

    public IChunkCopyCompletion Start(Tensor destination, Tensor source)
    {
        var copy = new Copy(destination, source);
        queue.Add(copy);
        return copy;
    }

    private void Serve()
    {
        foreach (var copy in queue.GetConsumingEnumerable()) copy.Run();
    }

    /// <summary>Finishes the copies already started, then stops the thread.</summary>
    public void Dispose()
    {
        if (queue.IsAddingCompleted) return;
        queue.CompleteAdding();
        thread.Join();
        queue.Dispose();
    }

    private sealed class Copy(Tensor destination, Tensor source) : IChunkCopyCompletion
    {
        private readonly ManualResetEventSlim done = new();
        private Exception? fault;

        public bool IsCompleted => done.IsSet;

        public void Run()
        {
            // Grad mode is per thread: this one starts with it on. An exception must not escape the thread (it would end the process).
            try
            {
                using (no_grad()) destination.copy_(source);
            }
            catch (Exception e) { fault = e; }
            done.Set();
        }

        public void Wait()
        {
            done.Wait();
            if (fault is not null) throw new InvalidOperationException($"a chunk read-ahead copy failed: {fault.Message}", fault);
        }
    }
}
