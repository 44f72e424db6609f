using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Memory;
using PatrickStar.Optimizer;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Adam over the chunks this rank owns, chunk index by chunk index: the gradients (in the parameter slots, or the
/// fp32 gradient chunks when accumulating), the master, momentum and variance of the same index, then the new
/// compute-precision parameters back into the parameter chunk.
/// </summary>
internal sealed class ChunkedAdam(ChunkLists chunks, AdamSettings adam, ScalarType computeType, bool tensorAdamOnDevice,
    TierMemory device, ChunkCollectives collectives, IterationCounters iteration, DiskPlacement? disk = null)
{
    /// <summary>Adam's step count (bias correction); saved and restored by checkpoints.</summary>
    public long StepCount { get; set; }

    /// <summary>The L2 norm of every rank's gradients together (non-finite on every rank when any rank overflowed).</summary>
    public double GlobalGradientNorm()
    {
        double sum = 0;
        using var deviceScope = NewDisposeScope();
        var onDevice = new List<Tensor>(); // gradients in device memory: their norm is taken there, with one read-back for all
        for (int i = 0; i < chunks.Count; i++)
        {
            if (!chunks.HasState(i)) continue;
            var source = chunks.Accumulating ? chunks.Gradient[i] : chunks.Param[i];
            if (source.OnDisk)
            {
                sum += disk!.Store.SumOfSquares(source, chunks.Used(i)); // taken as it was spilled, or read into a staging buffer
                continue;
            }
            if (source.Payload!.device_type != DeviceType.CPU)
            {
                onDevice.Add(GradientOf(i, staged: null, WholeChunk, stateDevice: null));
                continue;
            }
            using var scope = NewDisposeScope(); // per chunk: a copy read from disk goes before the next is read
            // One read per gradient on the CPU (no fp32 copy of a 16-bit chunk).
            double norm = PatrickStar.Optimizer.GradientClipping.GlobalNorm([GradientOf(i, staged: null, WholeChunk, stateDevice: null)]);
            sum += norm * norm;
        }
        if (onDevice.Count > 0)
        {
            double norm = PatrickStar.Optimizer.GradientClipping.GlobalNorm(onDevice);
            sum += norm * norm;
        }
        // Each rank holds the gradients of the chunks it owns: the sum of squares over ranks is the global one, and a
        // non-finite value on any rank (fp16 overflow) makes the sum non-finite everywhere, so every rank skips alike.
        return Math.Sqrt(collectives.SumOverRanks(sum));
    }

    /// <summary>One Adam step over every chunk this rank owns; gradients are multiplied by <paramref name="gradientMultiplier"/> (unscaling, clipping).</summary>
    public void Update(double learningRate, double gradientMultiplier)
    {
        StepCount++;
        var owned = Enumerable.Range(0, chunks.Count).Where(chunks.HasState).ToList();
        if (disk is null)
        {
            foreach (int i in owned) UpdateChunk(i, learningRate, gradientMultiplier, staged: null, WholeChunk);
            return;
        }
        // Chunks with nothing on disk are updated in place; the others stream through a bounded pool in slices (Adam is
        // elementwise): slice s+1 is read while slice s is updated, slice s-1 written behind; the last slices' writes go
        // on behind the next forward (a read of those chunks sees them).
        disk.Store.DropReadAhead(); // the parameters read ahead are about to change on disk
        disk.Store.ForgetSumsOfSquares();
        foreach (int i in owned.Where(i => !Members(i).Any(c => c.OnDisk))) UpdateChunk(i, learningRate, gradientMultiplier, staged: null, WholeChunk);
        var streamedChunks = owned.Where(i => Members(i).Any(c => c.OnDisk)).ToList();
        var groups = streamedChunks.Select(i => (IReadOnlyList<Chunk>)Members(i).Where(c => c.OnDisk).ToList()).ToList();
        var streamed = groups.Select(g => (IReadOnlyList<Tiers.StreamedMember>)g.Select(c => disk.Store.Member(c)).ToList()).ToList();
        Tiers.StreamedGroups.Run(disk.Store.Worker, disk.Store.Streaming, streamed, (slice, buffers) =>
        {
            var staged = new Dictionary<ChunkKind, Tiers.StagingBuffer>();
            for (int j = 0; j < buffers.Count; j++) staged[groups[slice.Group][j].Kind] = buffers[j];
            UpdateChunk(streamedChunks[slice.Group], learningRate, gradientMultiplier, staged, (slice.First, slice.Elements));
        }, overlap: disk.Store.Overlap, waitForWrites: !disk.Store.Overlap);
    }

    /// <summary>The slice that is a whole chunk.</summary>
    private (long First, long Count) WholeChunk => (0, chunks.Layout.ChunkSize);

    private IEnumerable<Chunk> Members(int i) => [chunks.Master[i], chunks.Momentum[i], chunks.Variance[i], chunks.Param[i]];

    /// <summary>
    /// The gradients of the used part of a slice of chunk i (elements from <c>slice.First</c>), in their dtype, where the
    /// optimizer state that uses them lives (<paramref name="stateDevice"/>; null: where they are). Gradients in device
    /// memory go to the host only for state on the host (counted: optimizer_grad_bytes_to_host); for state on the device
    /// they are read in place. From the staging buffer when the parameter chunk streams from disk, from a copy read from
    /// disk when only the norm needs it.
    /// </summary>
    private Tensor GradientOf(int i, IReadOnlyDictionary<ChunkKind, Tiers.StagingBuffer>? staged, (long First, long Count) slice, Device? stateDevice)
    {
        var source = chunks.Accumulating ? chunks.Gradient[i] : chunks.Param[i];
        Tensor part = staged is not null && staged.TryGetValue(source.Kind, out var buffer)
            ? DiskChunkStore.FromBuffer(buffer, source.DType, slice.Count)
            : (source.OnDisk ? disk!.Store.ReadCopy(source) : source.Payload!).narrow(0, slice.First, slice.Count);
        var prefix = part.narrow(0, 0, UsedIn(i, slice));
        if (stateDevice is null || OptimizerGradients.ReadInPlace(prefix.device, stateDevice)) return prefix;
        if (stateDevice.type == DeviceType.CPU) iteration.OptimizerGradientBytesToHost += prefix.numel() * Runtime.TensorMemory.ElementSize(prefix.dtype);
        return prefix.to(stateDevice); // in its own dtype: a 16-bit gradient crosses at half the bytes of fp32
    }

    /// <summary>
    /// Adam over chunk i, then the new compute-precision parameters into the parameter chunk. Optimizer
    /// state in CPU memory: the fused SIMD kernel updates each parameter's range in one pass and writes the
    /// compute-precision parameter itself (also for the device tier when the device is the CPU, so that where a
    /// chunk's state lives never changes a bit of the result; chunks streamed from disk are updated in their staging
    /// buffers). Optimizer state on a GPU (hybrid Adam): tensor ops there.
    /// </summary>
    private void UpdateChunk(int i, double lr, double gradientMultiplier, IReadOnlyDictionary<ChunkKind, Tiers.StagingBuffer>? staged,
        (long First, long Count) slice)
    {
        using var scope = NewDisposeScope();
        bool Staged(Chunk c) => staged?.ContainsKey(c.Kind) == true;
        var paramChunk = chunks.Param[i];
        bool kernel = Members(i).All(c => Staged(c) || c.Payload!.device_type == DeviceType.CPU)
                      && (chunks.Accumulating || Staged(paramChunk) || paramChunk.Payload!.is_contiguous())
                      && !(tensorAdamOnDevice && chunks.Master[i].Tier == device);
        foreach (var c in Members(i).Where(c => !Staged(c))) c.MarkModified();
        if (kernel)
        {
            KernelUpdate(i, staged, slice, lr, gradientMultiplier);
            return;
        }
        // Tensor ops: chunks streamed from disk are copied out of their staging buffers and back.
        Tensor TensorOf(Chunk c) => Staged(c)
            ? DiskChunkStore.FromBuffer(staged![c.Kind], c.DType, slice.Count)
            : c.Payload!.narrow(0, slice.First, slice.Count);
        var master = TensorOf(chunks.Master[i]);
        var m = TensorOf(chunks.Momentum[i]);
        var v = TensorOf(chunks.Variance[i]);
        var paramPayload = TensorOf(paramChunk);
        var grad = GradientOf(i, staged, slice, master.device).to(ScalarType.Float32); // state on the device: converted there, no host hop
        if (gradientMultiplier != 1.0) grad = grad.mul(gradientMultiplier);
        foreach (var mp in paramChunk.Tensors)
        {
            if (Overlap(mp, slice) is not { } part) continue;
            var (off, n) = part;
            AdamMath.Update(master.narrow(0, off, n), grad.narrow(0, off, n), m.narrow(0, off, n), v.narrow(0, off, n),
                lr, adam, StepCount, mp.Decay);
        }
        long used = UsedIn(i, slice);
        paramPayload.narrow(0, 0, used).copy_(master.narrow(0, 0, used));
        foreach (var (c, t) in new[] { (chunks.Master[i], master), (chunks.Momentum[i], m), (chunks.Variance[i], v), (paramChunk, paramPayload) })
            if (Staged(c)) DiskChunkStore.CopyOut(t, staged![c.Kind]);
    }

    /// <summary>The elements of chunk i in use within the slice.</summary>
    private long UsedIn(int i, (long First, long Count) slice) => Math.Clamp(chunks.Used(i) - slice.First, 0, slice.Count);

    /// <summary>Where parameter <paramref name="mp"/>'s range meets the slice, relative to the slice's first element; null if nowhere.</summary>
    private static (long Offset, long Count)? Overlap(ManagedParameter mp, (long First, long Count) slice)
    {
        long from = Math.Max(mp.Place.Offset, slice.First), to = Math.Min(mp.Place.Offset + mp.Place.Numel, slice.First + slice.Count);
        return to > from ? (from - slice.First, to - from) : null;
    }

    private unsafe void KernelUpdate(int i, IReadOnlyDictionary<ChunkKind, Tiers.StagingBuffer>? staged, (long First, long Count) slice,
        double lr, double gradientMultiplier)
    {
        // Element slice.First of every chunk: the start of a staging buffer, or that element of a payload.
        byte* Address(Chunk c) => staged is not null && staged.TryGetValue(c.Kind, out var b)
            ? (byte*)b.Pointer
            : (byte*)Runtime.TensorMemory.Address(c.Payload!) + slice.First * Runtime.TensorMemory.ElementSize(c.DType);
        var gradChunk = chunks.Accumulating ? chunks.Gradient[i] : chunks.Param[i];
        var gradType = KernelAdam.ElementOf(gradChunk.DType);
        var paramType = KernelAdam.ElementOf(computeType);
        int gradSize = Runtime.TensorMemory.ElementSize(gradChunk.DType);
        int paramSize = Runtime.TensorMemory.ElementSize(computeType);
        float* pm = (float*)Address(chunks.Master[i]);
        float* pmom = (float*)Address(chunks.Momentum[i]);
        float* pvar = (float*)Address(chunks.Variance[i]);
        byte* pg = Address(gradChunk);
        byte* pp = Address(chunks.Param[i]);
        int threads = KernelAdam.Threads;
        foreach (var mp in chunks.Param[i].Tensors)
        {
            if (Overlap(mp, slice) is not { } part) continue;
            var (off, count) = part;
            var h = new AdamHyperparameters(lr, adam.Beta1, adam.Beta2, adam.Eps, mp.Decay ? adam.WeightDecay : 0,
                DecoupledWeightDecay: adam.Type == OptimizerType.AdamW, StepCount, InverseLossScale: gradientMultiplier);
            CpuAdamKernel.Step(pm + off, pmom + off, pvar + off, pg + off * gradSize, gradType,
                pp + off * paramSize, paramType, count, h, threads: threads);
        }
    }
}
