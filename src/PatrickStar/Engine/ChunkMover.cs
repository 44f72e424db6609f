using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using PatrickStar.Timing;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Moves chunks between the tiers, synchronously: fetches a parameter chunk to the device before use, evicts others
/// when the placement policy says the device is full, and keeps the device-side accounting (peak, smallest budget
/// that would have done). A move is a real copy into a buffer owned by the target tier, except between tiers of one
/// memory (a CPU device and the host), where the target tier takes the buffer over.
/// </summary>
internal sealed class ChunkMover(ChunkLists chunks, TierMemory device, TierMemory host, PlacementPolicy placement,
    NonModelTracer tracer, IterationCounters iteration, long deviceBudget)
{
    private long useClock;

    public ProfileRecorder? Profiler { get; set; }

    /// <summary>The read-ahead of parameter chunks; null when it is off.</summary>
    public ChunkPrefetcher? Prefetcher { get; set; }

    /// <summary>The host ↔ disk placement when the engine has a disk tier.</summary>
    public DiskPlacement? Disk { get; set; }

    /// <summary>
    /// The smallest device budget the checks so far would have accepted: per moment, the non-model bytes the check
    /// compares (the sampled peak during warm-up) plus the parameter-chunk bytes that must be on the device together.
    /// </summary>
    public long DeviceNeedObserved { get; private set; }

    /// <summary>Largest device bytes seen at any moment: resident chunks + measured non-model data.</summary>
    public long PeakDeviceBytes { get; private set; }

    /// <summary>A moment begins with <paramref name="nonModel"/> bytes of non-model data: makes room for it, or says why it cannot be.</summary>
    public void ArriveAt(long nonModel, bool training)
    {
        Prefetcher?.Arrive(tracer.Moment);
        MakeRoom(placement.AllowedAtMomentStart(nonModel, tracer.WarmingUp, tracer.Moment), needed: null, training);
        ObserveNeed(nonModel, chunks.ComputingParamBytes(device));
        if (device.UsedBytes + nonModel > deviceBudget)
            throw new TierBudgetExceededException(
                $"at moment {tracer.Moment} ({tracer.Label}) {Bytes.Format(nonModel)} of non-model data ({nonModel:N0} bytes, {tracer.NonModelSource}) and " +
                $"{Bytes.Format(device.UsedBytes)} of chunks that cannot leave exceed the {Bytes.Format(deviceBudget)} device budget " +
                $"({deviceBudget:N0} bytes). Raise device_memory, or lower the batch or sequence length.");
        ObserveDevice(nonModel);
    }

    /// <summary>Brings a parameter chunk to the device for <paramref name="module"/>, evicting others when room is short.</summary>
    public void Fetch(Chunk chunk, string module, bool training)
    {
        tracer.RecordAccess(chunk.Index, training);
        long nonModel = tracer.LastNonModel;
        // A resident chunk passes unchecked only because it fitted beside this moment's non-model bytes: count it too.
        ObserveNeed(nonModel, chunks.Param.Where(c => c == chunk || (c.Tier == device && c.HasComputingTensor)).Sum(c => c.Bytes));
        Prefetcher?.Complete(chunk);
        if (chunk.Tier == device) return;
        long workingSet = chunk.Bytes + chunks.ComputingParamBytes(device);
        long room = deviceBudget - nonModel;
        long allowed = Math.Min(room, Math.Max(placement.AllowedChunkBytes(training, tracer.Moment), workingSet));
        if (workingSet > allowed) throw WorkingSetError(module, chunk, allowed);
        MakeRoom(allowed, chunk, training);
        if (device.InUseBytes + chunk.Bytes > allowed) throw WorkingSetError(module, chunk, allowed);
        // From disk straight into a CPU device's tier; a GPU's chunk goes through the host.
        Disk?.Load(chunk, device.Device.type == DeviceType.CPU ? device : host, $"{module} ({tracer.Label})");
        Move(chunk, device, $"{module} ({tracer.Label})");
        Disk?.ReadAheadAfter(tracer.Moment);
        ObserveDevice(nonModel);
    }

    public bool OnDevice(Chunk chunk) => chunk.Tier == device;

    /// <summary>Marks a chunk as used now (the warm-up evicts the least recently used).</summary>
    public void Touch(Chunk chunk) => chunk.LastUse = ++useClock;

    private Exception WorkingSetError(string module, Chunk chunk, long allowed)
    {
        long computing = chunks.ComputingParamBytes(device);
        long nonModel = tracer.LastNonModel;
        // The figure the check compared: the non-model bytes of this moment (during warm-up the sampled peak since the last moment).
        return new TierBudgetExceededException(
            $"the device budget cannot hold the working set of module '{module}' at moment {tracer.Moment} ({tracer.Label}): it needs " +
            $"{computing + chunk.Bytes:N0} bytes of parameter chunks ({Bytes.Format(computing + chunk.Bytes)}) while {Bytes.Format(nonModel)} of non-model data " +
            $"({nonModel:N0} bytes, {tracer.NonModelSource}) " +
            $"leaves {Bytes.Format(Math.Min(allowed, deviceBudget))} ({Math.Min(allowed, deviceBudget):N0} bytes) of the " +
            $"{Bytes.Format(deviceBudget)} device budget. Raise device_memory to at least {Bytes.Format(nonModel + computing + chunk.Bytes)}, " +
            "lower the batch or sequence length, or use a smaller chunk_size.");
    }

    /// <summary>Evicts chunks (OPT order after warm-up) until the device holds at most <paramref name="allowed"/> bytes of chunks plus <paramref name="needed"/>.</summary>
    private void MakeRoom(long allowed, Chunk? needed, bool training)
    {
        long extra = needed?.Bytes ?? 0;
        while (device.InUseBytes + extra > allowed)
        {
            var candidates = chunks.Param.Where(c => c.Tier == device && c != needed && !c.HasComputingTensor).ToList();
            if (candidates.Count == 0)
            {
                if (Prefetcher?.CancelOne() == true) continue; // a read-ahead copy gives its room back first
                // Non-model data above what the warm-up traced: hybrid Adam's optimizer state gives its room back.
                var group = chunks.Master.LastOrDefault(c => c.Tier == device);
                if (group is null) break;
                foreach (var c in chunks.OptimizerGroup(group.Index))
                    Move(c, host, $"optimizer state of chunk {group.Index} leaves for {tracer.Label}", ChunkEventType.Evict);
                iteration.Evictions++;
                continue;
            }
            var victim = placement.ChooseVictim(candidates, tracer.Trace, tracer.Moment, useTrace: !tracer.WarmingUp && training);
            Move(victim, host, $"eviction before {tracer.Label}", ChunkEventType.Evict);
            iteration.Evictions++;
        }
        // Pooled device buffers occupy the device too: keep only what the allowance leaves room for.
        // One buffer of the needed chunk's shape stays when the chunk comes from disk: its read takes that buffer (no fresh pages).
        long reused = needed is { OnDisk: true } && device.HasPooled(needed.DType, needed.Elements) ? extra : 0;
        if (device.UsedBytes + extra - reused > allowed) device.Trim(Math.Max(0, allowed - extra - device.InUseBytes) + reused);
    }

    /// <summary>
    /// Copy chunks even between tiers that share one memory (a CPU device and the host), as between a GPU and the host.
    /// Off by default: there the copy would only cost time, fresh pages and read-ahead work. Tests turn it on to run the copy path on a CPU.
    /// </summary>
    public bool CopyWithinOneMemory { get; init; }

    /// <summary>True when a move from <paramref name="from"/> to <paramref name="to"/> copies the payload (false: the target tier takes the buffer over).</summary>
    public bool Copies(TierMemory from, TierMemory to) => CopyWithinOneMemory || !from.SharesMemoryWith(to);

    /// <summary>
    /// The chunk changes tier: a copy into a buffer owned by the target tier (parameters of the chunk are re-pointed at it),
    /// or, where both tiers are one memory, the target tier takes the payload over as it is (no copy; parameters stay put).
    /// </summary>
    public void Move(Chunk chunk, TierMemory target, string purpose, ChunkEventType kind = ChunkEventType.Move)
    {
        Prefetcher?.Cancel(chunk);
        if (chunk.Tier == target) return;
        using var timed = StepPhases.Begin(StepPhase.ChunkMovement);
        chunk.RequireMovable(tracer.Label);
        if (target == host) Disk?.MakeHostRoom(chunk.Bytes, chunk);
        var oldTier = chunk.Tier!;
        if (Copies(oldTier, target))
        {
            var buffer = target.Acquire(chunk.DType, chunk.Elements, purpose);
            using (no_grad()) buffer.copy_(chunk.Payload!);
            var old = chunk.Replace(buffer, target, tracer.Label);
            if (chunk.Kind == ChunkKind.Param) Rebind(chunk);
            oldTier.Return(old);
        }
        else
        {
            target.TakeOver(chunk.Payload!, oldTier, purpose);
            chunk.Replace(chunk.Payload!, target, tracer.Label); // the same tensor: nothing to give back, nothing to re-point
        }
        if (target == device) iteration.BytesToDevice += chunk.Bytes; else iteration.BytesToHost += chunk.Bytes;
        iteration.Moves++;
        Profiler?.ChunkEvent(kind, chunk.Kind, chunk.Index, oldTier.Tier, target.Tier, chunk.Bytes);
    }

    /// <summary>
    /// Hybrid Adam: optimizer-state groups (master, momentum, variance of one chunk index) that fit in
    /// <paramref name="margin"/> move to the device once and are updated there from then on; they never have to leave,
    /// because parameter chunks fit beside them at every moment. The rest stay on the host for the SIMD kernel.
    /// </summary>
    public void MoveOptimizerStateToDevice(long margin)
    {
        for (int i = 0; i < chunks.Count; i++)
        {
            if (!chunks.HasState(i)) continue;
            var group = chunks.OptimizerGroup(i);
            if (group.Any(c => c.OnDisk)) continue; // streamed from disk by the optimizer instead
            long bytes = group.Sum(c => c.Bytes);
            if (bytes > margin) break;
            margin -= bytes;
            foreach (var c in group)
                Move(c, device, $"hybrid Adam: optimizer state of chunk {i}");
        }
        device.Trim(0);
    }

    /// <summary>Points every parameter of a parameter chunk at its slot in the current payload (same Parameter objects).</summary>
    public static void Rebind(Chunk chunk) => Rebind(chunk, chunk.Payload!);

    /// <summary>Points every parameter of <paramref name="chunk"/> at its slot in <paramref name="payload"/> (the chunk's own, or a copy of its values).</summary>
    public static void Rebind(Chunk chunk, Tensor payload)
    {
        using var _ = no_grad();
        foreach (var mp in chunk.Tensors)
        {
            using var slot = payload.narrow(0, mp.Place.Offset, mp.Place.Numel);
            using var view = slot.view(mp.Shape);
            mp.Parameter.set_(view);
        }
    }

    private void ObserveNeed(long nonModel, long chunkBytes) => DeviceNeedObserved = Math.Max(DeviceNeedObserved, nonModel + chunkBytes);

    private void ObserveDevice(long nonModel)
    {
        long model = device.UsedBytes;
        PeakDeviceBytes = Math.Max(PeakDeviceBytes, model + nonModel);
        if (model + nonModel > iteration.PeakDevice)
        {
            iteration.PeakDevice = model + nonModel;
            iteration.PeakDeviceModel = model;
            iteration.PeakDeviceNonModel = nonModel;
        }
    }
}
