using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>
/// The job of a process started without a launcher: one rank, no MPI library needed. Collectives
/// reduce over one value, so they copy (bf16/fp16 unchanged; Average divides by one).
/// </summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    private string? _aborted;

    public int Rank => 0;
    public int Size => 1;
    public string Backend => "single-process";

    public void AllGather(Tensor input, Tensor output)
    {
        CollectiveArgs.CheckPair(input, output, "AllGather", 1, 1);
        Copy(input, output);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveArgs.CheckPair(input, output, "ReduceScatter", 1, 1);
        Copy(input, output);
    }

    public void AllReduce(Tensor buffer, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveArgs.CheckBuffer(buffer, "AllReduce", "buffer");
        ThrowIfAborted();
    }

    public void Broadcast(Tensor buffer, int root)
    {
        CollectiveArgs.CheckBuffer(buffer, "Broadcast", "buffer");
        CollectiveArgs.CheckRoot(root, 1, "Broadcast");
        ThrowIfAborted();
    }

    public void Reduce(Tensor input, Tensor? output, int root, ReduceOp op = ReduceOp.Sum)
    {
        CollectiveArgs.CheckRoot(root, 1, "Reduce");
        if (output is null) throw new ArgumentNullException(nameof(output), "Reduce: the root rank 0 needs an output buffer.");
        CollectiveArgs.CheckPair(input, output, "Reduce", 1, 1);
        Copy(input, output);
    }

    public void Barrier() => ThrowIfAborted();

    public double AllReduce(double value, ReduceOp op)
    {
        ThrowIfAborted();
        return value;
    }

    public byte[][] AllGather(byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        ThrowIfAborted();
        return new[] { (byte[])data.Clone() };
    }

    /// <summary>There is no other rank to stop: later calls throw, and the caller rethrows its error.</summary>
    public void Abort(int code, string reason) => _aborted = $"the job was aborted (code {code}): {reason}";

    public void Dispose() { }

    private void Copy(Tensor input, Tensor output)
    {
        ThrowIfAborted();
        using var src = CollectiveArgs.Flat(input);
        using var dst = CollectiveArgs.Flat(output);
        using (no_grad()) dst.copy_(src);
    }

    private void ThrowIfAborted()
    {
        if (_aborted is not null) throw new CommunicatorAbortedException(0, _aborted);
    }
}
