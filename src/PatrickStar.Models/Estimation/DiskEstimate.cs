using System.Globalization;
using PatrickStar.Profiling;
using PatrickStar.Engine;
using PatrickStar.Tiers;

namespace PatrickStar.Models.Estimation;

/// <summary>Sequential disk bandwidth, in bytes per second, and where the figure came from ("given", "measured ...").</summary>
public sealed record DiskRates(double ReadBytesPerSecond, double WriteBytesPerSecond, string Source);

/// <summary>
/// The disk tier's part of an estimate: which chunks the host budget pushes to disk, the bytes they take there, the disk
/// traffic of one step and, with a bandwidth and a compute time, the predicted step time. See <see cref="DiskEstimator"/>.
/// </summary>
/// <param name="OptimizerChunksOnDisk">fp32 master, momentum and variance chunks on disk (of 3 x ChunksPerKind).</param>
/// <param name="ParamChunksOnDisk">Parameter chunks on disk once the model is built (of ChunksPerKind).</param>
/// <param name="DiskBytes">Bytes the chunk files take: a slot (rounded up to 4096 bytes) for every chunk of the four kinds, as the engine preallocates.</param>
/// <param name="HostNeedBytes">The host tier's peak: the chunks that stay in memory, at the moment the model is packed.</param>
/// <param name="HostShortBytes">Host bytes missing even with every optimizer and parameter chunk that can go on disk (0 normally).</param>
/// <param name="StagingBytes">The disk tier's staging buffers: host memory beside the host budget.</param>
/// <param name="ComputeSeconds">One step's time without disk traffic (given, or from the model FLOPs); null: unknown.</param>
public sealed record DiskEstimate(
    int ChunksPerKind,
    int OptimizerChunksOnDisk,
    int ParamChunksOnDisk,
    long DiskBytes,
    long? DiskBudgetBytes,
    long HostBudgetBytes,
    long HostNeedBytes,
    long HostShortBytes,
    long StagingBytes,
    long ReadBytesPerStep,
    long WriteBytesPerStep,
    DiskRates? Rates,
    double? ComputeSeconds)
{
    public long DiskShortBytes => DiskBudgetBytes is long b ? Math.Max(0, DiskBytes - b) : 0;
    public bool Fits => DiskShortBytes == 0 && HostShortBytes == 0;

    /// <summary>Seconds of disk traffic per step at the given bandwidth: reads / read rate + writes / write rate.</summary>
    public double? IoSeconds => Rates is { } r ? ReadBytesPerStep / r.ReadBytesPerSecond + WriteBytesPerStep / r.WriteBytesPerSecond : null;

    /// <summary>The step with read-ahead and write-behind hiding I/O under compute: compute + max(0, I/O - compute).</summary>
    public double? PredictedStepSeconds => ComputeSeconds is double c && IoSeconds is double io ? c + Math.Max(0, io - c) : null;

    /// <summary>The step if no I/O overlapped compute: compute + I/O (the bound when read-ahead never gets ahead).</summary>
    public double? SerialStepSeconds => ComputeSeconds is double c && IoSeconds is double io ? c + io : null;

    /// <summary>One line naming the disk need against the budget and the fix, when the need exceeds the budget.</summary>
    public string? Refusal => DiskShortBytes > 0
        ? string.Create(CultureInfo.InvariantCulture,
            $"disk need {Bytes.Format(DiskBytes)} ({DiskBytes} B: the files of {ChunksPerKind} parameter and {3 * ChunksPerKind} optimizer chunk slots, " +
            $"{OptimizerChunksOnDisk} + {ParamChunksOnDisk} of them on disk under the {Bytes.Format(HostBudgetBytes)} host budget) exceeds disk_memory " +
            $"{Bytes.Format(DiskBudgetBytes!.Value)} ({DiskBudgetBytes} B); raise --disk-memory to at least {(DiskBytes + (1 << 20) - 1) >> 20}MiB.")
        : null;
}

/// <summary>
/// The disk tier's estimate: what the chunk engine does (DiskPlacement, DiskChunkStore, ChunkedAdam), stated:
/// <list type="bullet">
/// <item>Optimizer state goes to disk, all of it, when every chunk list of the rank (parameters counted at 4 B) exceeds
/// the host budget; ChunkedAdam then streams it through staging buffers, not through the host tier.</item>
/// <item>The host tier peaks while the model is packed: chunk index i is packed beside the chunks before it, after room
/// was made for all its lists (parameters at 4 B); its optimizer chunks go to disk once it is packed. Parameter chunks
/// spill to disk to make that room; fp32 gradient chunks (accumulation) never go to disk. Training moves chunks within
/// the same budget and needs less (one parameter chunk at a time comes back from disk).</item>
/// <item>The disk files hold a slot for every chunk of the four kinds (preallocated); the staging buffers
/// (<see cref="DiskStaging"/>) are host memory beside the host budget.</item>
/// <item>Per step, each optimizer chunk on disk is read once and written once; each parameter chunk on disk is read in the
/// forward and again in the backward pass of every micro-batch, and written once after the update.</item>
/// <item>Predicted step = compute + max(0, I/O seconds - compute): read-ahead and write-behind hide the disk under compute up
/// to the compute time. Without overlap it would be compute + I/O seconds; both are reported.</item>
/// </list>
/// </summary>
public static class DiskEstimator
{
    /// <summary>The tier name of the staging buffers in <see cref="WithDisk"/>: not checked against a budget, counted by <see cref="MachineMemoryCheck"/>.</summary>
    public const string StagingTier = "staging";

    /// <param name="computeSeconds">A step's time without disk traffic; null: unknown (no predicted step time).</param>
    public static DiskEstimate Estimate(MemoryEstimate memory, long? diskBudget, DiskRates? rates, double? computeSeconds)
    {
        var r = memory.Request;
        var layout = memory.Layout ?? throw new ArgumentException("The disk tier is the chunk engine's; use --engine chunked.");
        int chunks = (layout.ChunkCount + r.Ranks - 1) / r.Ranks;
        long n = layout.ChunkSize, fp32 = n * 4, param = n * ActivationModel.ParameterBytes(r.Precision);
        long grad = r.GradientAccumulation > 1 ? fp32 : 0;
        long host = r.HostMemory, need = memory.ModelDataBytes, shortBytes = 0;

        int optimizer = 0, parameters = 0;
        if (chunks * (fp32 + 3 * fp32 + grad) > host)
        {
            optimizer = 3 * chunks;
            long resident = chunks * (param + grad);
            // Packing the last index: room for all its lists beside the chunks packed before it (the packing one cannot spill).
            long check = resident - param - grad + fp32 * (grad > 0 ? 5 : 4);
            parameters = (int)Math.Clamp(CeilDiv(check - host, param), 0, Math.Max(0, chunks - 1));
            need = resident + 3 * fp32 - parameters * param; // with that index's optimizer group, before it goes to disk
            long floor = check - parameters * param;
            if (floor > host) (need, shortBytes) = (floor, floor - host);
        }
        long fp32Slot = StagingBuffer.RoundUp(fp32), paramSlot = StagingBuffer.RoundUp(param);
        long reads = optimizer * fp32Slot + parameters * paramSlot * 2L * r.GradientAccumulation;
        long writes = optimizer * fp32Slot + parameters * paramSlot;
        return new DiskEstimate(chunks, optimizer, parameters, chunks * (3 * fp32Slot + paramSlot), diskBudget, host,
            need, shortBytes, DiskStaging.Bytes(n), reads, writes, rates, computeSeconds);
    }

    /// <summary>The memory estimate with the disk tier in its tiers: the host holds what stays of the chunks, the disk the rest.</summary>
    public static MemoryEstimate WithDisk(MemoryEstimate m, DiskEstimate d)
    {
        var tiers = m.Tiers.Where(t => t.Tier != "host").ToList();
        tiers.Add(new TierDemand("host", d.HostNeedBytes, d.HostBudgetBytes,
            $"the chunks not on disk, at the peak while the model is packed ({d.OptimizerChunksOnDisk} optimizer and {d.ParamChunksOnDisk} parameter chunks on disk)"));
        tiers.Add(new TierDemand("disk", d.DiskBytes, d.DiskBudgetBytes, "chunk files: a slot for every chunk of the four kinds, rounded up to 4 KiB"));
        tiers.Add(new TierDemand(StagingTier, d.StagingBytes, null, "the disk tier's staging buffers (host memory beside the host budget)"));
        var withDisk = new MemoryEstimate(m.Request, m.Parameters, m.Layout, m.ModelData, m.Activations, m.WorkingSetBytes, m.WorkingSetModule, tiers);
        if (!withDisk.Fits) withDisk.Knobs = [.. HostKnob(m, d), .. m.Knobs];
        return withDisk;
    }

    /// <summary>A host too small even with the disk tier: the host budget that holds what stays (in whole MiB), if that makes the run fit.</summary>
    private static IEnumerable<FitKnob> HostKnob(MemoryEstimate m, DiskEstimate d)
    {
        if (d.HostShortBytes == 0) yield break;
        long host = MemoryEstimator.RoundUpMiB(d.HostNeedBytes);
        var more = MemoryEstimator.Estimate(m.Request with { HostMemory = host }, suggestKnobs: false);
        var result = WithDisk(more, Estimate(more, d.DiskBudgetBytes, d.Rates, d.ComputeSeconds));
        if (result.Fits)
            yield return new FitKnob($"host memory {Bytes.Format(host)} (+{Bytes.Format(host - d.HostBudgetBytes)}), with the disk tier",
                $"--host-memory {host >> 20}MiB", result);
    }

    /// <summary>A step's compute time from the model FLOPs (<see cref="Gpt.GptConfig.TrainingFlops"/>, all micro-batches)
    /// at <paramref name="tflops"/> sustained.</summary>
    public static double ComputeSeconds(EstimateRequest r, double tflops) =>
        r.Model.TrainingFlops(r.MicroBatch, r.Sequence) * r.GradientAccumulation / (tflops * 1e12);

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
