using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Memory;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Data parallelism with chunks sharded between ranks (ZeRO-3 at chunk granularity). Chunk i is owned by
/// rank i % N and belongs to group i / N; only its owner keeps its fp32 master, momentum, variance (and
/// accumulated gradients), and a parameter payload between iterations. Other ranks fetch the payload before
/// they use it (all-gather of the whole group, or a broadcast of the one chunk) and, once backward has
/// delivered every gradient of the chunk (or group), send those gradients to the owner, who receives their
/// average (reduce-scatter, or reduce); the remote copies are then released. Every decision that triggers a
/// collective depends only on the layout and the model's call order, which are the same on every rank, so
/// all ranks call the same collectives in the same order. Without a communicator every call does nothing.
/// </summary>
internal sealed class ChunkCollectives : IDisposable
{
    private readonly ICommunicator? comm;
    private readonly DataParallelMode mode;
    private readonly ChunkLists chunks;
    private readonly TierMemory device;
    private readonly TierMemory host;
    private readonly ScalarType computeType;
    private readonly IterationCounters iteration;
    private readonly NonModelTracer tracer;
    /// <summary>Per chunk, on every rank alike: its parameters are current on every rank (fetched since the last release).</summary>
    private readonly bool[] fetched;
    /// <summary>Per chunk: its gradients of the current backward pass have gone to the owner.</summary>
    private readonly bool[] gradientsReduced;
    private Tensor? releasedPlaceholder;

    public ChunkCollectives(ICommunicator? comm, DataParallelMode mode, ChunkLists chunks, TierMemory device, TierMemory host,
        ScalarType computeType, IterationCounters iteration, NonModelTracer tracer)
    {
        // MPI moves host buffers: device tensors are staged through the host tier, and the cost is counted.
        this.comm = comm is null ? null : new HostStagedCommunicator(comm, iteration.Staging,
            (dtype, n) => host.Acquire(dtype, n, "host staging of a collective"), host.Return);
        this.mode = mode;
        this.chunks = chunks;
        this.device = device;
        this.host = host;
        this.computeType = computeType;
        this.iteration = iteration;
        this.tracer = tracer;
        fetched = new bool[chunks.Count];
        gradientsReduced = new bool[chunks.Count];
    }

    /// <summary>True when there are other ranks to talk to.</summary>
    public bool Active => comm is not null;

    private int Ranks => chunks.Ranks;
    private int Rank => chunks.Rank;

    /// <summary>Device bytes the collectives borrow at once: a group of chunks (gather) or one chunk (broadcast).</summary>
    public long BufferBytes => comm is null ? 0
        : TierMemory.Bytes(computeType, chunks.Layout.ChunkSize) * (mode == DataParallelMode.Gather ? Ranks : 1);

    /// <summary>The sum of <paramref name="value"/> over the ranks (the value itself when training alone).</summary>
    public double SumOverRanks(double value) => comm is null ? value : comm.AllReduce(value, ReduceOp.Sum);

    /// <summary>
    /// Points the parameters of a chunk without payload at one shared element, with their own shapes (stride 0),
    /// so that they keep no released buffer alive and report their real sizes; nothing may read them until fetched.
    /// </summary>
    public void BindReleased(Chunk chunk)
    {
        using var _ = no_grad();
        releasedPlaceholder ??= zeros(1, dtype: computeType).DetachFromDisposeScope();
        foreach (var mp in chunk.Tensors)
        {
            using var view = releasedPlaceholder.expand(mp.Shape);
            mp.Parameter.set_(view);
        }
    }

    // ---- Before use: fetch -------------------------------------------------------------------------

    public void EnsureFetched(Chunk chunk)
    {
        if (comm is null || fetched[chunk.Index]) return;
        using var _ = no_grad();
        if (mode == DataParallelMode.Gather) GatherGroup(chunk.Index / Ranks);
        else BroadcastChunk(chunk);
    }

    /// <summary>The host ↔ disk placement when the engine has a disk tier: this rank's chunks may be on disk.</summary>
    public DiskPlacement? Disk { get; set; }

    /// <summary>Reads one of this rank's chunks back from disk (into the host tier) before a collective uses its payload.</summary>
    private void Resident(Chunk chunk)
    {
        if (chunk.OnDisk) Disk!.Load(chunk, host, $"{chunk.Kind} chunk {chunk.Index} for a collective ({tracer.Label})");
    }

    /// <summary>A host payload for a remote chunk, its parameters re-pointed at it.</summary>
    private void AttachRemotePayload(Chunk chunk)
    {
        Disk?.MakeHostRoom(chunk.Bytes, chunk);
        chunk.Attach(host.Acquire(chunk.DType, chunk.Elements, $"remote parameter chunk {chunk.Index}"), host);
        ChunkMover.Rebind(chunk);
    }

    private void GatherGroup(int group)
    {
        long n = chunks.Layout.ChunkSize;
        var buffer = device.Acquire(computeType, n * Ranks, $"all-gather of chunk group {group}");
        try
        {
            using (var mine = buffer.narrow(0, Rank * n, n))
            {
                var own = chunks.Param[group * Ranks + Rank];
                Resident(own);
                if (own.Payload is null) mine.zero_(); // a padding chunk
                else mine.copy_(own.Payload);
                Timed(() => comm!.AllGather(mine, buffer), buffer);
            }
            for (int r = 0; r < Ranks; r++)
            {
                var chunk = chunks.Param[group * Ranks + r];
                fetched[chunk.Index] = true;
                if (r == Rank || chunk.Tensors.Count == 0) continue;
                AttachRemotePayload(chunk);
                using var slice = buffer.narrow(0, r * n, n);
                chunk.Payload!.copy_(slice);
            }
        }
        finally
        {
            device.Return(buffer);
        }
    }

    private void BroadcastChunk(Chunk chunk)
    {
        int owner = chunks.OwnerOf(chunk.Index);
        if (owner != Rank) AttachRemotePayload(chunk);
        Timed(() => comm!.Broadcast(chunk.Payload!, owner), chunk.Payload!); // straight into the payload: no buffer at all
        fetched[chunk.Index] = true;
    }

    /// <summary>Runs one collective and counts its buffer's bytes and its wall time (comm_bytes, comm_seconds).</summary>
    private void Timed(Action collective, Tensor buffer)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        collective();
        iteration.CommunicationSeconds += System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
        iteration.CommunicatedBytes += TierMemory.Bytes(buffer.dtype, buffer.numel());
        iteration.Collectives++;
    }

    // ---- After backward: gradients to the owner ------------------------------------------------------

    /// <summary>Called after each module's backward: reduces the chunks (or groups) whose every gradient has now arrived.</summary>
    public void ReduceCompletedGradients(IEnumerable<ManagedParameter> parameters)
    {
        if (comm is null) return;
        foreach (var mp in parameters)
        {
            int index = mp.Place.Chunk;
            if (mode == DataParallelMode.Gather)
            {
                int group = index / Ranks;
                if (!gradientsReduced[index] && Enumerable.Range(group * Ranks, Ranks).All(i => GradientsComplete(chunks.Param[i])))
                    ReduceGroup(group);
            }
            else if (!gradientsReduced[index] && GradientsComplete(chunks.Param[index]))
            {
                ReduceChunk(chunks.Param[index]);
            }
        }
    }

    /// <summary>At the end of backward: chunks whose parameters got no gradient at all (unused this step) are reduced too, in index order.</summary>
    public void ReduceRemainingGradients()
    {
        if (comm is null) return;
        for (int i = 0; i < chunks.Count; i++)
        {
            if (gradientsReduced[i]) continue;
            if (mode == DataParallelMode.Gather) ReduceGroup(i / Ranks);
            else if (chunks.Param[i].Tensors.Count > 0) ReduceChunk(chunks.Param[i]);
        }
        Array.Clear(gradientsReduced);
    }

    /// <summary>Every tensor of the chunk has received its last gradient contribution of this backward (or will receive none) and is not computing.</summary>
    private static bool GradientsComplete(Chunk chunk) =>
        chunk.Tensors.All(t => t.Gradient.AllArrived && t.State != TensorState.Compute);

    /// <summary>Slots without a gradient (parameters unused this step) still hold weights: they send zeros.</summary>
    private static void ZeroSlotsWithoutGradient(Chunk chunk)
    {
        if (chunk.Payload is null) return;
        foreach (var mp in chunk.Tensors.Where(t => t.Gradient.Content != SlotContent.Gradient))
        {
            using var slot = chunk.Slot(mp.Place);
            slot.zero_();
        }
    }

    private void ReduceGroup(int group)
    {
        using var _ = no_grad();
        long n = chunks.Layout.ChunkSize;
        var buffer = device.Acquire(computeType, n * Ranks, $"reduce-scatter of chunk group {group}");
        var averaged = device.Acquire(computeType, n, $"gradients of chunk {group * Ranks + Rank}");
        try
        {
            for (int r = 0; r < Ranks; r++)
            {
                var chunk = chunks.Param[group * Ranks + r];
                using var slice = buffer.narrow(0, r * n, n);
                Resident(chunk);
                ZeroSlotsWithoutGradient(chunk);
                if (chunk.Payload is null) slice.zero_();
                else slice.copy_(chunk.Payload);
            }
            Timed(() => comm!.ReduceScatter(buffer, averaged, ReduceOp.Average), buffer);
            TakeAveragedGradients(chunks.Param[group * Ranks + Rank], averaged);
        }
        finally
        {
            device.Return(averaged);
            device.Return(buffer);
        }
        for (int r = 0; r < Ranks; r++) FinishReduction(chunks.Param[group * Ranks + r]);
    }

    private void ReduceChunk(Chunk chunk)
    {
        using var _ = no_grad();
        int owner = chunks.OwnerOf(chunk.Index);
        // One buffer: the owner receives into it; a rank that never fetched the chunk (its parameters were unused) sends zeros from it.
        var buffer = device.Acquire(computeType, chunks.Layout.ChunkSize, $"reduce of chunk {chunk.Index}");
        try
        {
            Resident(chunk);
            ZeroSlotsWithoutGradient(chunk);
            Tensor send = chunk.Payload ?? buffer.zero_();
            Timed(() => comm!.Reduce(send, owner == Rank ? buffer : null, owner, ReduceOp.Average), send);
            if (owner == Rank) TakeAveragedGradients(chunk, buffer);
        }
        finally
        {
            device.Return(buffer);
        }
        FinishReduction(chunk);
    }

    /// <summary>
    /// The owner's averaged gradients: without accumulation they take the parameter slots (PatrickStar's reuse, as
    /// when training alone); with accumulation they are added to the fp32 gradient chunk and the parameters come
    /// back from the masters for the next micro-batch.
    /// </summary>
    private void TakeAveragedGradients(Chunk chunk, Tensor averaged)
    {
        if (!chunks.HasState(chunk.Index)) return; // a padding chunk
        Resident(chunk);
        chunk.MarkModified();
        long used = chunks.Used(chunk.Index);
        using var result = averaged.narrow(0, 0, used);
        using var param = chunk.UsedPart(used);
        if (chunks.Accumulating)
        {
            using var accumulator = chunks.Gradient[chunk.Index].UsedPart(used);
            using var wide = result.to(ScalarType.Float32).to(accumulator.device);
            accumulator.add_(wide);
            using var masterValues = Disk.ReadValues(chunks.Master[chunk.Index]);
            using var master = masterValues.narrow(0, 0, used);
            param.copy_(master);
            foreach (var mp in chunk.Tensors) mp.Gradient.Clear();
        }
        else
        {
            param.copy_(result);
            foreach (var mp in chunk.Tensors) mp.Gradient.MarkInSlot();
        }
    }

    private void FinishReduction(Chunk chunk)
    {
        gradientsReduced[chunk.Index] = true;
        fetched[chunk.Index] = false;
        if (!chunks.HasState(chunk.Index)) Release(chunk);
    }

    /// <summary>RELEASED: a remote chunk gives its payload back; its parameters point at nothing until fetched again.</summary>
    private void Release(Chunk chunk)
    {
        if (chunk.Payload is null) return;
        var tier = chunk.Tier!;
        var payload = chunk.Detach(tracer.Label);
        BindReleased(chunk);
        tier.Return(payload);
        foreach (var mp in chunk.Tensors) mp.Gradient.Clear();
    }

    /// <summary>After an update (or a dropped step) every fetched copy is stale: release them all, on every rank alike.</summary>
    public void ReleaseRemoteChunks()
    {
        if (comm is null) return;
        foreach (var c in chunks.Param)
        {
            fetched[c.Index] = false;
            if (!chunks.HasState(c.Index)) Release(c);
        }
    }

    public void Dispose() => releasedPlaceholder?.Dispose();
}
