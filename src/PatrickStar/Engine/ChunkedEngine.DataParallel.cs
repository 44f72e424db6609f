using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Memory;
using TorchSharp;
using TorchSharp.Modules;
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
/// all ranks call the same collectives in the same order.
/// </summary>
public sealed partial class ChunkedEngine
{
    private readonly ICommunicator? comm;
    private readonly DataParallelMode dpMode;
    /// <summary>The layout's chunks padded with empty ones to a multiple of the ranks.</summary>
    private readonly int chunkCount;
    /// <summary>Per chunk, on every rank alike: its parameters are current on every rank (fetched since the last release).</summary>
    private readonly bool[] fetched;
    /// <summary>Per chunk: its gradients of the current backward pass have gone to the owner.</summary>
    private readonly bool[] gradientsReduced;
    private Tensor? releasedPlaceholder;

    /// <summary>The ranks sharing the model (1 without data parallelism).</summary>
    public int Ranks => comm?.Size ?? 1;

    /// <summary>This engine's rank (0 without data parallelism).</summary>
    public int Rank => comm?.Rank ?? 0;

    /// <summary>Chunks per list, padding included (the layout's count when training alone).</summary>
    public int ChunkCount => chunkCount;

    /// <summary>The rank that keeps chunk <paramref name="index"/>'s optimizer state.</summary>
    public int OwnerOf(int index) => index % Ranks;

    /// <summary>True for the chunks whose master, momentum and variance this rank keeps (padding chunks hold nothing).</summary>
    private bool HasState(int index) => OwnerOf(index) == Rank && index < layout.ChunkCount;

    private long Used(int index) => index < layout.ChunkCount ? layout.UsedPerChunk[index] : 0;

    /// <summary>Device bytes the collectives borrow at once: a group of chunks (gather) or one chunk (broadcast).</summary>
    private long CommunicationBufferBytes => comm is null ? 0
        : TierMemory.Bytes(computeType, layout.ChunkSize) * (dpMode == DataParallelMode.Gather ? Ranks : 1);

    private ChunkRuntime ReleasedChunk(int index, ChunkKind kind, ScalarType dtype) => new(index, kind, dtype, layout.ChunkSize);

    /// <summary>
    /// Points the parameters of a chunk without payload at one shared element, with their own shapes (stride 0),
    /// so that they keep no released buffer alive and report their real sizes; nothing may read them until fetched.
    /// </summary>
    private void BindReleased(ChunkRuntime chunk)
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

    private void EnsureFetched(ChunkRuntime chunk)
    {
        if (comm is null || fetched[chunk.Index]) return;
        using var _ = no_grad();
        if (dpMode == DataParallelMode.Gather) GatherGroup(chunk.Index / Ranks);
        else BroadcastChunk(chunk);
    }

    /// <summary>A host payload for a remote chunk, its parameters re-pointed at it.</summary>
    private void AttachRemotePayload(ChunkRuntime chunk)
    {
        chunk.Payload = host.Acquire(chunk.DType, chunk.Elements, $"remote parameter chunk {chunk.Index}");
        chunk.Tier = host;
        Rebind(chunk);
    }

    private void GatherGroup(int group)
    {
        long n = layout.ChunkSize;
        var buffer = device.Acquire(computeType, n * Ranks, $"all-gather of chunk group {group}");
        try
        {
            using (var mine = buffer.narrow(0, Rank * n, n))
            {
                var own = paramChunks[group * Ranks + Rank];
                if (own.Payload is null) mine.zero_(); // a padding chunk
                else mine.copy_(own.Payload);
                Timed(() => comm!.AllGather(mine, buffer), buffer);
            }
            for (int r = 0; r < Ranks; r++)
            {
                var chunk = paramChunks[group * Ranks + r];
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

    private void BroadcastChunk(ChunkRuntime chunk)
    {
        int owner = OwnerOf(chunk.Index);
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
    private void ReduceCompletedGradients(IReadOnlyList<Parameter> parameters)
    {
        foreach (var p in parameters)
        {
            int index = managed[p].Place.Chunk;
            if (dpMode == DataParallelMode.Gather)
            {
                int group = index / Ranks;
                if (!gradientsReduced[index] && Enumerable.Range(group * Ranks, Ranks).All(i => GradientsComplete(paramChunks[i])))
                    ReduceGroup(group);
            }
            else if (!gradientsReduced[index] && GradientsComplete(paramChunks[index]))
            {
                ReduceChunk(paramChunks[index]);
            }
        }
    }

    /// <summary>At the end of backward: chunks whose parameters got no gradient at all (unused this step) are reduced too, in index order.</summary>
    private void ReduceRemainingGradients()
    {
        for (int i = 0; i < chunkCount; i++)
        {
            if (gradientsReduced[i]) continue;
            if (dpMode == DataParallelMode.Gather) ReduceGroup(i / Ranks);
            else if (paramChunks[i].Tensors.Count > 0) ReduceChunk(paramChunks[i]);
        }
        Array.Clear(gradientsReduced);
    }

    /// <summary>Every tensor of the chunk has received its last gradient contribution of this backward (or will receive none) and is not computing.</summary>
    private static bool GradientsComplete(ChunkRuntime chunk) =>
        chunk.Tensors.All(t => t.BackwardUsesLeft == 0 && t.State != TensorState.Compute);

    /// <summary>Slots without a gradient (parameters unused this step) still hold weights: they send zeros.</summary>
    private static void ZeroSlotsWithoutGradient(ChunkRuntime chunk)
    {
        if (chunk.Payload is null) return;
        foreach (var mp in chunk.Tensors.Where(t => !t.GradientInSlot))
        {
            using var slot = chunk.Slot(mp.Place);
            slot.zero_();
        }
    }

    private void ReduceGroup(int group)
    {
        using var _ = no_grad();
        long n = layout.ChunkSize;
        var buffer = device.Acquire(computeType, n * Ranks, $"reduce-scatter of chunk group {group}");
        var averaged = device.Acquire(computeType, n, $"gradients of chunk {group * Ranks + Rank}");
        try
        {
            for (int r = 0; r < Ranks; r++)
            {
                var chunk = paramChunks[group * Ranks + r];
                using var slice = buffer.narrow(0, r * n, n);
                ZeroSlotsWithoutGradient(chunk);
                if (chunk.Payload is null) slice.zero_();
                else slice.copy_(chunk.Payload);
            }
            Timed(() => comm!.ReduceScatter(buffer, averaged, ReduceOp.Average), buffer);
            TakeAveragedGradients(paramChunks[group * Ranks + Rank], averaged);
        }
        finally
        {
            device.Return(averaged);
            device.Return(buffer);
        }
        for (int r = 0; r < Ranks; r++) FinishReduction(paramChunks[group * Ranks + r]);
    }

    private void ReduceChunk(ChunkRuntime chunk)
    {
        using var _ = no_grad();
        int owner = OwnerOf(chunk.Index);
        // One buffer: the owner receives into it; a rank that never fetched the chunk (its parameters were unused) sends zeros from it.
        var buffer = device.Acquire(computeType, layout.ChunkSize, $"reduce of chunk {chunk.Index}");
        try
        {
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
    private void TakeAveragedGradients(ChunkRuntime chunk, Tensor averaged)
    {
        if (!HasState(chunk.Index)) return; // a padding chunk
        long used = Used(chunk.Index);
        using var result = averaged.narrow(0, 0, used);
        using var param = chunk.Payload!.narrow(0, 0, used);
        if (gradientChunks.Count > 0)
        {
            using var accumulator = gradientChunks[chunk.Index].Payload!.narrow(0, 0, used);
            using var wide = result.to(ScalarType.Float32).to(accumulator.device);
            accumulator.add_(wide);
            using var master = masterChunks[chunk.Index].Payload!.narrow(0, 0, used);
            param.copy_(master);
            foreach (var mp in chunk.Tensors) mp.GradientInSlot = false;
        }
        else
        {
            param.copy_(result);
            foreach (var mp in chunk.Tensors) mp.GradientInSlot = true;
        }
    }

    private void FinishReduction(ChunkRuntime chunk)
    {
        gradientsReduced[chunk.Index] = true;
        fetched[chunk.Index] = false;
        if (!HasState(chunk.Index)) Release(chunk);
    }

    /// <summary>RELEASED: a remote chunk gives its payload back; its parameters point at nothing until fetched again.</summary>
    private void Release(ChunkRuntime chunk)
    {
        if (chunk.Payload is null) return;
        if (chunk.HasComputingTensor)
            throw new InvalidOperationException($"remote chunk {chunk.Index} cannot be released during {momentLabel}: a tensor in it is computing.");
        BindReleased(chunk);
        chunk.Tier!.Return(chunk.Payload);
        chunk.Payload = null;
        chunk.Tier = null;
        foreach (var mp in chunk.Tensors) mp.GradientInSlot = false;
    }

    /// <summary>After an update (or a dropped step) every fetched copy is stale: release them all, on every rank alike.</summary>
    private void ReleaseRemoteChunks()
    {
        if (comm is null) return;
        foreach (var c in paramChunks)
        {
            fetched[c.Index] = false;
            if (!HasState(c.Index)) Release(c);
        }
    }

    /// <summary>Bytes of chunk payloads this rank holds now, both tiers (pooled buffers not counted).</summary>
    public long ModelDataBytesHeld =>
        paramChunks.Concat(masterChunks).Concat(momentumChunks).Concat(varianceChunks).Concat(gradientChunks)
            .Where(c => c.Payload is not null).Sum(c => c.Bytes);
}
