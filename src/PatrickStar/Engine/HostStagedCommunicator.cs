using System.Diagnostics;
using PatrickStar.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>What the collectives' host staging cost over an iteration, and their time in the communicator.</summary>
public sealed class CollectiveStaging
{
    public long ToHostBytes { get; internal set; }
    public long ToDeviceBytes { get; internal set; }
    public double StagingSeconds { get; internal set; }
    public double CommunicatorSeconds { get; internal set; }

    public void Reset()
    {
        ToHostBytes = ToDeviceBytes = 0;
        StagingSeconds = CommunicatorSeconds = 0;
    }
}

/// <summary>
/// The communicator the chunk engine talks to: MPI (and the in-process backends) move host buffers only, so a device
/// tensor goes through host memory: copied into a host buffer before the collective (what this rank sends), and the
/// result copied back after it (what it receives). Host tensors pass straight through. Every copy's bytes and time, and
/// the time in the communicator itself, are counted in <see cref="CollectiveStaging"/> (the engine statistics'
/// comm_staged_* and comm_mpi_seconds). Host buffers come from <paramref name="rent"/> and go back to
/// <paramref name="giveBack"/> (the engine's host tier: pooled, pinned on a GPU, within the host budget).
/// </summary>
/// <param name="needsStaging">Whether a tensor must go through host memory; by default: it is not in CPU memory.</param>
public sealed class HostStagedCommunicator(ICommunicator inner, CollectiveStaging counters, Func<ScalarType, long, Tensor>? rent = null,
    Action<Tensor>? giveBack = null, Func<Tensor, bool>? needsStaging = null) : ICommunicator
{
    private readonly Func<ScalarType, long, Tensor> rent = rent ?? ((dtype, n) => empty(n, dtype: dtype).DetachFromDisposeScope());
    private readonly Action<Tensor> giveBack = giveBack ?? (t => t.Dispose());
    private readonly Func<Tensor, bool> staged = needsStaging ?? (t => t.device_type != DeviceType.CPU);

    public int Rank => inner.Rank;
    public int Size => inner.Size;
    public string Backend => inner.Backend;

    public void AllGather(Tensor input, Tensor output)
    {
        if (!staged(output))
        {
            using var host = new Staged(this, input, copyIn: true);
            Communicate(() => inner.AllGather(host.Tensor, output));
            return;
        }
        // The whole output through one host buffer; this rank's part is copied into its slice (the in-place form).
        using var all = new Staged(this, output, copyIn: false);
        using var mine = all.Tensor.narrow(0, Rank * input.numel(), input.numel());
        Copy(mine, input, toHost: staged(input));
        Communicate(() => inner.AllGather(mine, all.Tensor));
        all.CopyBack();
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        using var send = new Staged(this, input, copyIn: true);
        using var receive = new Staged(this, output, copyIn: false);
        Communicate(() => inner.ReduceScatter(send.Tensor, receive.Tensor, op));
        receive.CopyBack();
    }

    public void AllReduce(Tensor buffer, ReduceOp op = ReduceOp.Sum)
    {
        using var host = new Staged(this, buffer, copyIn: true);
        Communicate(() => inner.AllReduce(host.Tensor, op));
        host.CopyBack();
    }

    public void Broadcast(Tensor buffer, int root)
    {
        using var host = new Staged(this, buffer, copyIn: Rank == root);
        Communicate(() => inner.Broadcast(host.Tensor, root));
        if (Rank != root) host.CopyBack();
    }

    public void Reduce(Tensor input, Tensor? output, int root, ReduceOp op = ReduceOp.Sum)
    {
        using var send = new Staged(this, input, copyIn: true);
        using var receive = output is null ? null : new Staged(this, output, copyIn: false);
        Communicate(() => inner.Reduce(send.Tensor, receive?.Tensor, root, op));
        if (Rank == root) receive?.CopyBack();
    }

    public void Barrier() => inner.Barrier();
    public double AllReduce(double value, ReduceOp op) => inner.AllReduce(value, op);
    public byte[][] AllGather(byte[] data) => inner.AllGather(data);
    public void Abort(int code, string reason) => inner.Abort(code, reason);

    /// <summary>The communicator belongs to the caller: nothing to release here.</summary>
    public void Dispose() { }

    private void Communicate(Action collective)
    {
        long start = Stopwatch.GetTimestamp();
        collective();
        counters.CommunicatorSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>Copies <paramref name="source"/> into <paramref name="destination"/> (contiguous, any shapes of one size), counted as staging.</summary>
    private void Copy(Tensor destination, Tensor source, bool toHost)
    {
        long start = Stopwatch.GetTimestamp();
        using (no_grad())
        using (var to = destination.view(-1))
        using (var from = source.reshape(-1))
            to.copy_(from); // synchronous: the time is the copy's
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        long bytes = source.numel() * Runtime.TensorMemory.ElementSize(source.dtype);
        if (toHost) counters.ToHostBytes += bytes;
        else counters.ToDeviceBytes += bytes;
        counters.StagingSeconds += seconds;
    }

    /// <summary>A tensor as the communicator sees it: itself when in host memory, else a rented host buffer (given back at dispose).</summary>
    private sealed class Staged : IDisposable
    {
        private readonly HostStagedCommunicator owner;
        private readonly Tensor original;
        private readonly Tensor? buffer;

        public Staged(HostStagedCommunicator owner, Tensor original, bool copyIn)
        {
            this.owner = owner;
            this.original = original;
            if (!owner.staged(original)) return;
            buffer = owner.rent(original.dtype, original.numel());
            try
            {
                if (copyIn) owner.Copy(buffer, original, toHost: true);
            }
            catch
            {
                owner.giveBack(buffer);
                throw;
            }
        }

        /// <summary>What the communicator reads or writes.</summary>
        public Tensor Tensor => buffer ?? original;

        /// <summary>The collective's result into the original tensor (nothing when it was in host memory already).</summary>
        public void CopyBack()
        {
            if (buffer is null) return;
            owner.Copy(original, buffer, toHost: false);
        }

        public void Dispose()
        {
            if (buffer is not null) owner.giveBack(buffer);
        }
    }
}
