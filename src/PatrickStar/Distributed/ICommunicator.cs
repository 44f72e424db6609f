using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>How a collective combines the ranks' values.</summary>
public enum ReduceOp
{
    Sum,
    /// <summary>The sum divided by the number of ranks (computed in fp32 or fp64, then narrowed).</summary>
    Average,
    Max,
    Min,
}

/// <summary>
/// Collectives over the ranks of a data-parallel job. Tensors are contiguous CPU buffers (any shape,
/// treated as flat) of fp32, bf16 or fp16; every rank must call the same collectives in the same order
/// with the same element counts and dtypes.
/// bf16 and fp16 reductions are computed by widening to fp32, reducing in fp32 and narrowing once with
/// round-to-nearest-even (torch's dtype conversion), so a sum is as exact as the fp32 sum of the ranks'
/// values. The order in which ranks are added is the backend's: the in-process and single-process
/// backends add in rank order; MPI's order is implementation-defined, so fp32 sums that are not exact
/// may differ in the last bit between backends.
/// </summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's (or thread's) rank, 0 ≤ Rank &lt; Size.</summary>
    int Rank { get; }

    /// <summary>The number of ranks in the job.</summary>
    int Size { get; }

    /// <summary>A short name of the backend ("mpi (Open MPI ...)", "in-process", "single-process").</summary>
    string Backend { get; }

    /// <summary>output = the ranks' inputs, concatenated in rank order (output.numel = Size × input.numel).
    /// The input may be this rank's own slice of the output (the in-place form).</summary>
    void AllGather(Tensor input, Tensor output);

    /// <summary>Reduces the ranks' inputs elementwise and leaves slice Rank of the result in output
    /// (input.numel = Size × output.numel).</summary>
    void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum);

    /// <summary>Reduces the ranks' buffers elementwise, in place: every rank gets the result.</summary>
    void AllReduce(Tensor buffer, ReduceOp op = ReduceOp.Sum);

    /// <summary>Copies root's buffer into every other rank's buffer.</summary>
    void Broadcast(Tensor buffer, int root);

    /// <summary>Reduces the ranks' inputs elementwise into root's output; output is not touched (and may be
    /// null) on the other ranks.</summary>
    void Reduce(Tensor input, Tensor? output, int root, ReduceOp op = ReduceOp.Sum);

    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();

    /// <summary>Reduces one number over the ranks (Sum, Average, Max, Min in fp64); every rank gets the result.</summary>
    double AllReduce(double value, ReduceOp op);

    /// <summary>Every rank's bytes, indexed by rank (lengths may differ between ranks).</summary>
    byte[][] AllGather(byte[] data);

    /// <summary>
    /// Stops the whole job because this rank failed. Under MPI this calls MPI_Abort (every process of
    /// the job is terminated and this call does not return). In-process, the group is marked failed so
    /// that the other ranks' pending and future calls throw <see cref="CommunicatorAbortedException"/>
    /// naming this rank; the call returns and the caller should rethrow.
    /// </summary>
    void Abort(int code, string reason);
}
