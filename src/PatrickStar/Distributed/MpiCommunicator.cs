using PatrickStar.Runtime;
using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>
/// The communicator of a process started by mpirun: MPI_COMM_WORLD through our own binding of the
/// MPI library (<see cref="MpiLibrary"/>). bf16/fp16 reductions widen into a reused fp32 scratch
/// buffer, reduce with MPI_SUM/MAX/MIN on MPI_FLOAT, and narrow once (round-to-nearest-even);
/// gathers and broadcasts move 16-bit values as 16-bit words without conversion. Calls longer than
/// <see cref="MaxElementsPerCall"/> (C int counts) are split. Calls are serialized with a lock, so
/// several threads may share one communicator. One per process: MPI cannot be initialized twice.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    private static readonly object OpenGate = new();
    private static bool _initializedOnce;

    private readonly MpiLibrary _mpi;
    private readonly object _gate = new();
    private Tensor? _scratch;
    private bool _disposed;
    private int _maxElementsPerCall = int.MaxValue;

    private MpiCommunicator(MpiLibrary mpi, int rank, int size, int threadLevel)
    {
        _mpi = mpi;
        Rank = rank;
        Size = size;
        ThreadLevel = threadLevel;
        Backend = $"mpi ({mpi.Version()})";
    }

    public int Rank { get; }
    public int Size { get; }
    public string Backend { get; }

    /// <summary>The thread support MPI_Init_thread granted (3 = MPI_THREAD_MULTIPLE).</summary>
    public int ThreadLevel { get; }

    /// <summary>The most elements one MPI call carries (C int counts); longer collectives are split.
    /// Lower it only to exercise the splitting on small buffers.</summary>
    public int MaxElementsPerCall
    {
        get => _maxElementsPerCall;
        set => _maxElementsPerCall = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), "at least one element per call.");
    }

    /// <summary>Initializes MPI (MPI_Init_thread, MPI_THREAD_MULTIPLE requested) and returns MPI_COMM_WORLD's communicator.
    /// <paramref name="libraryNames"/> are the sonames tried in order (default: Open MPI's, then MPICH's).</summary>
    public static MpiCommunicator Open(IEnumerable<string>? libraryNames = null)
    {
        lock (OpenGate)
        {
            if (_initializedOnce)
                throw new InvalidOperationException("MPI was already initialized in this process; MPI allows it once. Keep one MpiCommunicator for the whole run.");
            var mpi = MpiLibrary.Load(libraryNames ?? MpiLibrary.OpenMpiNames.Concat(MpiLibrary.MpichNames));
            int provided = 0, initialized = 0;
            mpi.Initialized(&initialized);
            if (initialized == 0)
                Check(mpi, mpi.Init_thread(null, null, MpiLibrary.ThreadMultiple, &provided), "MPI_Init_thread", -1);
            _initializedOnce = true;
            // Errors come back as codes (and become exceptions) instead of killing the job inside MPI.
            Check(mpi, mpi.Comm_set_errhandler(mpi.CommWorld, mpi.ErrorsReturn), "MPI_Comm_set_errhandler", -1);
            int rank, size;
            Check(mpi, mpi.Comm_rank(mpi.CommWorld, &rank), "MPI_Comm_rank", -1);
            Check(mpi, mpi.Comm_size(mpi.CommWorld, &size), "MPI_Comm_size", rank);
            return new MpiCommunicator(mpi, rank, size, provided);
        }
    }

    public void AllGather(Tensor input, Tensor output)
    {
        const string call = "AllGather";
        CollectiveArgs.CheckPair(input, output, call, Size, 1);
        long n = input.numel();
        if (n == 0) return;
        lock (_gate)
        {
            ThrowIfDisposed(call);
            using var scope = NewDisposeScope();
            var (type, width) = WireType(input.dtype);
            byte* outAddr = Address(output);
            byte* mine = outAddr + Rank * n * width;
            byte* inAddr = Address(input);
            if (inAddr != mine)
            {
                if (Overlaps(inAddr, n * width, outAddr, Size * n * width))
                {
                    // MPI forbids send and receive buffers that overlap other than in the MPI_IN_PLACE form.
                    using var copy = input.flatten().clone();
                    CopyBytes(Address(copy), mine, n * width);
                }
                else CopyBytes(inAddr, mine, n * width);
            }
            if (n <= MaxElementsPerCall)
            {
                Check(_mpi.Allgather((void*)_mpi.InPlace, 0, type, outAddr, (int)n, type, _mpi.CommWorld), "MPI_Allgather");
                return;
            }
            // Too long for one C int count: every rank broadcasts its own slice, piece by piece.
            for (int root = 0; root < Size; root++)
                foreach (var (offset, count) in Pieces(n))
                    Check(_mpi.Bcast(outAddr + (root * n + offset) * width, count, type, root, _mpi.CommWorld), "MPI_Bcast (AllGather piece)");
        }
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "ReduceScatter";
        CollectiveArgs.CheckPair(input, output, call, 1, Size);
        long m = output.numel();
        if (m == 0) return;
        lock (_gate)
        {
            ThrowIfDisposed(call);
            using var scope = NewDisposeScope();
            var mpiOp = Op(op);
            // fp32 input goes straight to MPI unless it overlaps the output; 16-bit input is widened.
            bool direct = input.dtype == ScalarType.Float32 && !Overlaps(Address(input), input.numel() * 4, Address(output), m * 4);
            byte* send, recv;
            Tensor? wide = null;
            if (direct)
            {
                send = Address(input);
                recv = Address(output);
            }
            else
            {
                var scratch = Scratch(Size * m + m);
                scratch.narrow(0, 0, Size * m).copy_(input.flatten());
                wide = scratch.narrow(0, Size * m, m);
                send = Address(scratch);
                recv = Address(wide);
            }
            if (m <= MaxElementsPerCall)
                Check(_mpi.Reduce_scatter_block(send, recv, (int)m, _mpi.Float, mpiOp, _mpi.CommWorld), "MPI_Reduce_scatter_block");
            else
                // Too long for one C int count: reduce each rank's slice to that rank, piece by piece.
                for (int root = 0; root < Size; root++)
                    foreach (var (offset, count) in Pieces(m))
                        Check(_mpi.Reduce(send + (root * m + offset) * 4, root == Rank ? recv + offset * 4 : null, count, _mpi.Float, mpiOp, root, _mpi.CommWorld),
                            "MPI_Reduce (ReduceScatter piece)");
            using (no_grad())
            {
                if (wide is null)
                {
                    if (op == ReduceOp.Average) output.div_(Size);
                }
                else
                {
                    if (op == ReduceOp.Average) wide.div_(Size);
                    output.view(-1).copy_(wide);
                }
            }
        }
    }

    public void AllReduce(Tensor buffer, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "AllReduce";
        CollectiveArgs.CheckBuffer(buffer, call, "buffer");
        long n = buffer.numel();
        if (n == 0) return;
        lock (_gate)
        {
            ThrowIfDisposed(call);
            using var scope = NewDisposeScope();
            var target = buffer.dtype == ScalarType.Float32 ? buffer.view(-1) : Scratch(n).copy_(buffer.view(-1));
            byte* addr = Address(target);
            foreach (var (offset, count) in Pieces(n))
                Check(_mpi.Allreduce((void*)_mpi.InPlace, addr + offset * 4, count, _mpi.Float, Op(op), _mpi.CommWorld), "MPI_Allreduce");
            using (no_grad())
            {
                if (op == ReduceOp.Average) target.div_(Size);
                if (buffer.dtype != ScalarType.Float32) buffer.view(-1).copy_(target);
            }
        }
    }

    public void Broadcast(Tensor buffer, int root)
    {
        const string call = "Broadcast";
        CollectiveArgs.CheckBuffer(buffer, call, "buffer");
        CollectiveArgs.CheckRoot(root, Size, call);
        long n = buffer.numel();
        if (n == 0) return;
        lock (_gate)
        {
            ThrowIfDisposed(call);
            var (type, width) = WireType(buffer.dtype);
            byte* addr = Address(buffer);
            foreach (var (offset, count) in Pieces(n))
                Check(_mpi.Bcast(addr + offset * width, count, type, root, _mpi.CommWorld), "MPI_Bcast");
        }
    }

    public void Reduce(Tensor input, Tensor? output, int root, ReduceOp op = ReduceOp.Sum)
    {
        const string call = "Reduce";
        CollectiveArgs.CheckRoot(root, Size, call);
        bool isRoot = Rank == root;
        if (isRoot)
        {
            if (output is null) throw new ArgumentNullException(nameof(output), $"{call}: the root rank {root} needs an output buffer.");
            CollectiveArgs.CheckPair(input, output, call, 1, 1);
        }
        else CollectiveArgs.CheckBuffer(input, call, "input");
        long n = input.numel();
        if (n == 0) return;
        lock (_gate)
        {
            ThrowIfDisposed(call);
            using var scope = NewDisposeScope();
            bool direct = input.dtype == ScalarType.Float32 && (!isRoot || !Overlaps(Address(input), n * 4, Address(output!), n * 4));
            byte* send, recv = null;
            Tensor? wide = null;
            if (direct)
            {
                send = Address(input);
                if (isRoot) recv = Address(output!);
            }
            else
            {
                var scratch = Scratch(2 * n);
                scratch.narrow(0, 0, n).copy_(input.flatten());
                wide = scratch.narrow(0, n, n);
                send = Address(scratch);
                recv = Address(wide);
            }
            foreach (var (offset, count) in Pieces(n))
                Check(_mpi.Reduce(send + offset * 4, isRoot ? recv + offset * 4 : null, count, _mpi.Float, Op(op), root, _mpi.CommWorld), "MPI_Reduce");
            if (!isRoot) return;
            using (no_grad())
            {
                var result = wide ?? output!.view(-1);
                if (op == ReduceOp.Average) result.div_(Size);
                if (wide is not null) output!.view(-1).copy_(wide);
            }
        }
    }

    public void Barrier()
    {
        lock (_gate)
        {
            ThrowIfDisposed("Barrier");
            Check(_mpi.Barrier(_mpi.CommWorld), "MPI_Barrier");
        }
    }

    public double AllReduce(double value, ReduceOp op)
    {
        lock (_gate)
        {
            ThrowIfDisposed("AllReduce(double)");
            double result = 0;
            Check(_mpi.Allreduce(&value, &result, 1, _mpi.Double, Op(op), _mpi.CommWorld), "MPI_Allreduce (double)");
            return op == ReduceOp.Average ? result / Size : result;
        }
    }

    public byte[][] AllGather(byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        lock (_gate)
        {
            ThrowIfDisposed("AllGather(bytes)");
            var lengths = new int[Size];
            int length = data.Length;
            fixed (int* l = lengths)
                Check(_mpi.Allgather(&length, 1, _mpi.Int, l, 1, _mpi.Int, _mpi.CommWorld), "MPI_Allgather (lengths)");
            var offsets = new int[Size];
            long total = 0;
            for (int r = 0; r < Size; r++)
            {
                if (total > int.MaxValue) throw new ArgumentException("AllGather(bytes): the ranks' data together exceed 2 GiB; gather tensors instead.");
                offsets[r] = (int)total;
                total += lengths[r];
            }
            var all = new byte[total];
            fixed (byte* send = data)
            fixed (byte* recv = all)
            fixed (int* counts = lengths)
            fixed (int* displs = offsets)
                Check(_mpi.Allgatherv(send, data.Length, _mpi.Byte, recv, counts, displs, _mpi.Byte, _mpi.CommWorld), "MPI_Allgatherv");
            return Enumerable.Range(0, Size).Select(r => all.AsSpan(offsets[r], lengths[r]).ToArray()).ToArray();
        }
    }

    public void Abort(int code, string reason)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"rank {Rank}/{Size}: aborting the job (code {code}): {reason}");
        Console.Error.Flush();
        // MPI_Abort makes the launcher terminate every process of the job; no lock, so that a thread
        // stuck in a collective cannot stop the abort.
        _mpi.Abort(_mpi.CommWorld, code);
        Environment.Exit(code == 0 ? 1 : code);
    }

    /// <summary>MPI_Finalize: a collective, so every rank should dispose its communicator at the end of the run.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _scratch?.Dispose();
            _scratch = null;
            int finalized = 0;
            _mpi.Finalized(&finalized);
            if (finalized == 0) Check(_mpi.Finalize(), "MPI_Finalize");
        }
    }

    /// <summary>
    /// For the comm check: one deliberately invalid call (a broadcast from a root that does not exist,
    /// made by every rank) whose error must come back as an exception naming the call and MPI's own
    /// text, not kill the job. Returns that message ("" if MPI accepted the call).
    /// </summary>
    internal string ProvokeError()
    {
        lock (_gate)
        {
            ThrowIfDisposed("ProvokeError");
            int dummy = 0;
            try
            {
                Check(_mpi.Bcast(&dummy, 1, _mpi.Int, Size, _mpi.CommWorld), "MPI_Bcast");
                return "";
            }
            catch (CommunicatorException e)
            {
                return e.Message;
            }
        }
    }

    /// <summary>A view of the first <paramref name="elements"/> of the reused fp32 scratch buffer (grown as needed).</summary>
    private Tensor Scratch(long elements)
    {
        if (_scratch is null || _scratch.numel() < elements)
        {
            _scratch?.Dispose();
            _scratch = empty(elements, ScalarType.Float32).DetachFromDisposeScope();
        }
        return _scratch.narrow(0, 0, elements);
    }

    private IEnumerable<(long Offset, int Count)> Pieces(long n)
    {
        for (long offset = 0; offset < n; offset += MaxElementsPerCall)
            yield return (offset, (int)Math.Min(MaxElementsPerCall, n - offset));
    }

    private (nint Type, long Width) WireType(ScalarType dtype) =>
        dtype == ScalarType.Float32 ? (_mpi.Float, 4) : (_mpi.Short, 2); // 16-bit values travel as opaque 16-bit words

    private nint Op(ReduceOp op) => op switch
    {
        ReduceOp.Sum or ReduceOp.Average => _mpi.OpSum,
        ReduceOp.Max => _mpi.OpMax,
        ReduceOp.Min => _mpi.OpMin,
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    private static byte* Address(Tensor t) => (byte*)TensorMemory.Address(t);

    private static bool Overlaps(byte* a, long aBytes, byte* b, long bBytes) => a < b + bBytes && b < a + aBytes;

    private static void CopyBytes(byte* from, byte* to, long bytes) => Buffer.MemoryCopy(from, to, bytes, bytes);

    private void Check(int code, string call) => Check(_mpi, code, call, Rank);

    private static void Check(MpiLibrary mpi, int code, string call, int rank)
    {
        if (code != 0)
            throw new CommunicatorException($"{call} failed{(rank >= 0 ? $" on rank {rank}" : "")}: {mpi.ErrorText(code)} (MPI error code {code}, {mpi.Name}).");
    }

    private void ThrowIfDisposed(string call)
    {
        if (_disposed) throw new ObjectDisposedException(nameof(MpiCommunicator), $"{call}: MPI was finalized (the communicator was disposed).");
    }
}
