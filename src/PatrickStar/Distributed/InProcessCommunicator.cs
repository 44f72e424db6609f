using System.Diagnostics;
using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>
/// Ranks as threads of one process (one communicator per thread), with the same semantics as
/// <see cref="MpiCommunicator"/>: for unit tests of sharding logic without launching processes.
/// Reductions add in rank order in fp32. Every collective is two rendezvous: all ranks post their
/// buffers, each computes its own result from the posted ones into a temporary, all confirm they are
/// done reading, then each writes its result (so inputs that alias outputs are safe).
/// A rank that aborts or leaves wakes every waiting rank with an exception naming it; a partner that
/// never arrives ends the wait after the group's timeout with an exception naming the missing ranks.
/// </summary>
public sealed class InProcessCommunicator : ICommunicator
{
    private readonly Rendezvous _group;
    private bool _disposed;

    private InProcessCommunicator(Rendezvous group, int rank)
    {
        _group = group;
        Rank = rank;
    }

    public int Rank { get; }
    public int Size => _group.Size;
    public string Backend => "in-process";

    /// <summary>Makes a group of <paramref name="size"/> ranks; give communicator r to the thread that plays rank r.
    /// <paramref name="timeout"/> bounds every wait for a partner (default 30 s).</summary>
    public static InProcessCommunicator[] CreateGroup(int size, TimeSpan? timeout = null)
    {
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), $"a group needs at least one rank, not {size}.");
        var group = new Rendezvous(size, timeout ?? TimeSpan.FromSeconds(30));
        return Enumerable.Range(0, size).Select(r => new InProcessCommunicator(group, r)).ToArray();
    }

    /// <summary>
    /// Runs <paramref name="body"/> on <paramref name="size"/> threads, one per rank, the way a real job
    /// should: a rank whose body throws aborts the group, so the others stop instead of waiting. Returns
    /// each rank's result; throws an <see cref="AggregateException"/> of every rank's exception if any failed.
    /// </summary>
    public static T[] Run<T>(int size, Func<ICommunicator, T> body, TimeSpan? timeout = null)
    {
        var comms = CreateGroup(size, timeout);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = comms.Select(c => new Thread(() =>
        {
            try
            {
                results[c.Rank] = body(c);
            }
            catch (Exception e)
            {
                errors[c.Rank] = e;
                if (e is not CommunicatorAbortedException) c.Abort(1, $"{e.GetType().Name}: {e.Message}");
            }
            finally
            {
                c.Dispose();
            }
        }) { IsBackground = true, Name = $"rank {c.Rank}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (errors.Any(e => e is not null))
            throw new AggregateException($"ranks {string.Join(", ", Enumerable.Range(0, size).Where(r => errors[r] is not null))} failed",
                errors.Where(e => e is not null)!);
        return results;
    }

    public static void Run(int size, Action<ICommunicator> body, TimeSpan? timeout = null) =>
        Run(size, c => { body(c); return 0; }, timeout);

    public void AllGather(Tensor input, Tensor output)
    {
        const string call = "AllGather";
        CollectiveArgs.CheckPair(input, output, call, Size, 1);
        var posts = Exchange(call, new Post(input, input.dtype, input.numel()));
        using var scope = NewDisposeScope();
        var parts = posts.Select(p => CollectiveArgs.Flat(p.Buffer!)).ToArray();
        var result = cat(parts, 0); // a copy: written to output only after everyone has read
        Exchange(call + " (done reading)", null);
        using (no_grad()) CollectiveArgs.Flat(output).copy_(result);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "ReduceScatter";
        CollectiveArgs.CheckPair(input, output, call, 1, Size);
        var posts = Exchange(call, new Post(input, input.dtype, input.numel(), Op: op));
        using var scope = NewDisposeScope();
        long n = output.numel();
        var result = ReduceSlices(posts, Rank * n, n, op, output.dtype);
        Exchange(call + " (done reading)", null);
        using (no_grad()) CollectiveArgs.Flat(output).copy_(result);
    }

    public void AllReduce(Tensor buffer, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "AllReduce";
        CollectiveArgs.CheckBuffer(buffer, call, "buffer");
        var posts = Exchange(call, new Post(buffer, buffer.dtype, buffer.numel(), Op: op));
        using var scope = NewDisposeScope();
        var result = ReduceSlices(posts, 0, buffer.numel(), op, buffer.dtype);
        Exchange(call + " (done reading)", null);
        using (no_grad()) CollectiveArgs.Flat(buffer).copy_(result);
    }

    public void Broadcast(Tensor buffer, int root)
    {
        const string call = "Broadcast";
        CollectiveArgs.CheckBuffer(buffer, call, "buffer");
        CollectiveArgs.CheckRoot(root, Size, call);
        var posts = Exchange(call, new Post(buffer, buffer.dtype, buffer.numel(), Root: root));
        if (Rank != root)
        {
            using var source = CollectiveArgs.Flat(posts[root].Buffer!);
            using var target = CollectiveArgs.Flat(buffer);
            using (no_grad()) target.copy_(source);
        }
        Exchange(call + " (done reading)", null);
    }

    public void Reduce(Tensor input, Tensor? output, int root, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "Reduce";
        CollectiveArgs.CheckRoot(root, Size, call);
        if (Rank == root)
        {
            if (output is null) throw new ArgumentNullException(nameof(output), $"{call}: the root rank {root} needs an output buffer.");
            CollectiveArgs.CheckPair(input, output, call, 1, 1);
        }
        else CollectiveArgs.CheckBuffer(input, call, "input");
        var posts = Exchange(call, new Post(input, input.dtype, input.numel(), Op: op, Root: root));
        using var scope = NewDisposeScope();
        var result = Rank == root ? ReduceSlices(posts, 0, input.numel(), op, input.dtype) : null;
        Exchange(call + " (done reading)", null);
        if (result is not null)
            using (no_grad()) CollectiveArgs.Flat(output!).copy_(result);
    }

    public void Barrier() => Exchange("Barrier", new Post(null, null, 0));

    public double AllReduce(double value, ReduceOp op)
    {
        var posts = Exchange("AllReduce(double)", new Post(null, null, 1, Op: op, Scalar: value));
        double acc = posts[0].Scalar;
        for (int r = 1; r < Size; r++) acc = CollectiveArgs.Combine(acc, posts[r].Scalar, op);
        return op == ReduceOp.Average ? acc / Size : acc;
    }

    public byte[][] AllGather(byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var posts = Exchange("AllGather(bytes)", new Post(null, null, 0, Bytes: (byte[])data.Clone()));
        return posts.Select(p => (byte[])p.Bytes!.Clone()).ToArray();
    }

    public void Abort(int code, string reason) => _group.Fail(Rank, $"rank {Rank} aborted the job (code {code}): {reason}");

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _group.Leave(Rank);
    }

    /// <summary>fp32 reduction of elements [offset, offset+count) of every rank's posted buffer, in rank order, narrowed to dtype.</summary>
    private Tensor ReduceSlices(Post[] posts, long offset, long count, ReduceOp op, ScalarType dtype)
    {
        var acc = CollectiveArgs.Flat(posts[0].Buffer!).narrow(0, offset, count).to(ScalarType.Float32, copy: true);
        for (int r = 1; r < posts.Length; r++)
            CollectiveArgs.Combine(acc, CollectiveArgs.Flat(posts[r].Buffer!).narrow(0, offset, count).to(ScalarType.Float32), op);
        if (op == ReduceOp.Average) acc.div_(posts.Length);
        return acc.to(dtype);
    }

    private Post[] Exchange(string call, Post? post)
    {
        if (_disposed) throw new ObjectDisposedException(nameof(InProcessCommunicator), $"{call}: rank {Rank}'s communicator was disposed.");
        var posts = _group.Arrive(Rank, call, post ?? new Post(null, null, 0));
        // Every rank sees the same posts, so every rank detects a mismatch and throws alike (no hang).
        var first = posts[0];
        for (int r = 1; r < posts.Length; r++)
        {
            var p = posts[r];
            if (p.Dtype != first.Dtype || p.Count != first.Count || p.Op != first.Op || p.Root != first.Root)
                throw new CommunicatorException($"{call}: the ranks called it with different arguments: rank 0 with {first}, rank {r} with {p}. " +
                                                "Every rank must call the same collectives with the same sizes, dtypes, ops and roots.");
        }
        return posts;
    }

    private sealed record Post(Tensor? Buffer, ScalarType? Dtype, long Count, ReduceOp Op = ReduceOp.Sum, int Root = -1, double Scalar = 0, byte[]? Bytes = null)
    {
        public override string ToString() => $"{Count} elements{(Dtype is null ? "" : $" of {Dtype}")}, op {Op}{(Root >= 0 ? $", root {Root}" : "")}";
    }

    /// <summary>The meeting point of one group: a generation-counted barrier that carries each rank's post.</summary>
    private sealed class Rendezvous
    {
        private readonly object _gate = new();
        private readonly TimeSpan _timeout;
        private readonly Post?[] _slots;
        private readonly string?[] _calls;
        private readonly bool[] _left;
        private Post[] _completed = Array.Empty<Post>();
        private long _generation;
        private int _arrived;
        private (int Rank, string Message)? _failure;

        public Rendezvous(int size, TimeSpan timeout)
        {
            Size = size;
            _timeout = timeout;
            _slots = new Post?[size];
            _calls = new string?[size];
            _left = new bool[size];
        }

        public int Size { get; }

        public Post[] Arrive(int rank, string call, Post post)
        {
            lock (_gate)
            {
                ThrowIfFailed(rank, call);
                long generation = _generation;
                _slots[rank] = post;
                _calls[rank] = call;
                if (++_arrived == Size)
                {
                    var calls = _calls.Distinct().ToList();
                    _completed = _slots.Select(s => s!).ToArray();
                    Array.Clear(_slots);
                    Array.Clear(_calls);
                    _arrived = 0;
                    _generation++;
                    Monitor.PulseAll(_gate);
                    if (calls.Count > 1)
                        Fail(rank, $"the ranks are in different collectives ({string.Join(", ", calls)}); every rank must call the same collectives in the same order.");
                    ThrowIfFailed(rank, call);
                    return _completed;
                }
                var clock = Stopwatch.StartNew();
                while (_generation == generation)
                {
                    ThrowIfFailed(rank, call);
                    var missing = Enumerable.Range(0, Size).Where(r => _slots[r] is null).ToList();
                    var gone = missing.Where(r => _left[r]).ToList();
                    if (gone.Count > 0)
                    {
                        Fail(gone[0], $"rank {gone[0]} left the group (disposed its communicator) while rank {rank} waited for it in {call}.");
                        continue;
                    }
                    var remaining = _timeout - clock.Elapsed;
                    if (remaining <= TimeSpan.Zero)
                        Fail(missing[0], $"rank {rank} waited {_timeout.TotalSeconds:0.#} s in {call} for rank{(missing.Count > 1 ? "s" : "")} " +
                                         $"{string.Join(", ", missing)}, which never arrived (a rank stuck, or calling different collectives).");
                    else
                        Monitor.Wait(_gate, remaining);
                }
                // The next generation cannot complete without this rank, so _completed is still this generation's.
                ThrowIfFailed(rank, call);
                return _completed;
            }
        }

        public void Fail(int rank, string message)
        {
            lock (_gate)
            {
                _failure ??= (rank, message);
                Monitor.PulseAll(_gate);
            }
        }

        public void Leave(int rank)
        {
            lock (_gate)
            {
                _left[rank] = true;
                Monitor.PulseAll(_gate);
            }
        }

        private void ThrowIfFailed(int rank, string call)
        {
            if (_failure is { } f)
                throw new CommunicatorAbortedException(f.Rank, $"{call} on rank {rank} cannot complete: {f.Message}");
        }
    }
}
