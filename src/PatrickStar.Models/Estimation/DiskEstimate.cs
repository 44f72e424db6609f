using System.Globalization;
using PatrickStar.Profiling;
using PatrickStar.Tiers;

namespace PatrickStar.Models.Estimation;

/// <summary>Sequential disk bandwidth, in bytes per second, and where the figure came from ("given", "measured ...").</summary>
public sealed record DiskRates(double ReadBytesPerSecond, double WriteBytesPerSecond, string Source);

/// <summary>
/// The disk tier's part of an estimate: which chunks the host budget pushes to disk, the bytes they take there, the disk
/// traffic of one step and, with a bandwidth and a compute time, the predicted step time. See <see cref="DiskEstimator"/>.
/// </summary>
/// <param name="OptimizerChunksOnDisk">fp32 master, momentum and variance chunks on disk (of 3 x ChunksPerKind).</param>
/// <param name="ParamChunksOnDisk">Parameter chunks on disk (of ChunksPerKind).</param>
/// <param name="DiskBytes">Bytes the chunk files take: each chunk in a slot rounded up to 4096 bytes.</param>
/// <param name="HostNeedBytes">Host bytes with that many chunks on disk: the chunks left plus the staging buffers.</param>
/// <param name="HostShortBytes">Host bytes missing even with every optimizer and parameter chunk on disk (0 normally).</param>
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
            $"disk need {Bytes.Format(DiskBytes)} ({DiskBytes} B: {OptimizerChunksOnDisk} optimizer + {ParamChunksOnDisk} parameter chunks that do not fit the " +
            $"{Bytes.Format(HostBudgetBytes)} host budget) exceeds --disk-memory {Bytes.Format(DiskBudgetBytes!.Value)} ({DiskBudgetBytes} B); " +
            $"raise --disk-memory to at least {(DiskBytes + (1 << 20) - 1) >> 20}MiB or --host-memory.")
        : null;
}

/// <summary>
/// The disk tier's estimate. The model, stated:
/// <list type="bullet">
/// <item>The host must hold every chunk of the rank (<see cref="MemoryEstimate.ModelDataBytes"/>). What exceeds the host budget
/// goes to disk in whole chunks: optimizer state first (master, momentum, variance: used once per step), then parameter chunks.
/// Gradient-accumulation chunks stay on the host.</item>
/// <item>With optimizer chunks on disk the host keeps the optimizer's slice pool, <see cref="OptimizerStagingBytes"/>:
/// <see cref="StreamedGroups.OptimizerBuffers"/> buffers of a slice of a chunk (read slice s+1 while slice s is updated and
/// slice s-1 is written back), a fixed size whatever the chunk size; with parameter chunks on disk,
/// <see cref="ParamStagingChunks"/> parameter buffers (one read ahead, one in use).</item>
/// <item>Per step, each optimizer chunk on disk is read once and written once; each parameter chunk on disk is read in the
/// forward and again in the backward pass of every micro-batch, and written once after the update.</item>
/// <item>Predicted step = compute + max(0, I/O seconds - compute): read-ahead and write-behind hide the disk under compute up
/// to the compute time. Without overlap it would be compute + I/O seconds; both are reported.</item>
/// </list>
/// </summary>
public static class DiskEstimator
{
    /// <summary>Host bytes of the optimizer's slice pool: whole fp32 chunks when one is smaller than a slice.</summary>
    public static long OptimizerStagingBytes(long chunkElements) =>
        StreamedGroups.OptimizerBuffers * Math.Min(StagingBuffer.RoundUp(chunkElements * 4), StreamedGroups.DefaultSliceBytes);

    public const int ParamStagingChunks = 2;

    /// <param name="computeSeconds">A step's time without disk traffic; null: unknown (no predicted step time).</param>
    public static DiskEstimate Estimate(MemoryEstimate memory, long? diskBudget, DiskRates? rates, double? computeSeconds)
    {
        var r = memory.Request;
        var layout = memory.Layout ?? throw new ArgumentException("The disk tier is the chunk engine's; use --engine chunked.");
        int chunks = (layout.ChunkCount + r.Ranks - 1) / r.Ranks;
        long fp32 = layout.ChunkSize * 4, param = layout.ChunkSize * ActivationModel.ParameterBytes(r.Precision);
        long host = r.HostMemory, need = memory.ModelDataBytes;

        int optimizer = 0, parameters = 0;
        if (need > host)
        {
            need += OptimizerStagingBytes(layout.ChunkSize);
            optimizer = (int)Math.Min(3L * chunks, CeilDiv(need - host, fp32));
            need -= optimizer * fp32;
            if (need > host)
            {
                need += Math.Min(ParamStagingChunks, chunks) * param;
                parameters = (int)Math.Min(chunks, CeilDiv(need - host, param));
                need -= parameters * param;
            }
        }
        long fp32Slot = StagingBuffer.RoundUp(fp32), paramSlot = StagingBuffer.RoundUp(param);
        long reads = optimizer * fp32Slot + parameters * paramSlot * 2L * r.GradientAccumulation;
        long writes = optimizer * fp32Slot + parameters * paramSlot;
        return new DiskEstimate(chunks, optimizer, parameters, optimizer * fp32Slot + parameters * paramSlot, diskBudget, host,
            need, Math.Max(0, need - host), reads, writes, rates, computeSeconds);
    }

    /// <summary>The memory estimate with the disk tier in its tiers: the host holds what stays of the chunks, the disk the rest.</summary>
    public static MemoryEstimate WithDisk(MemoryEstimate m, DiskEstimate d)
    {
        var tiers = m.Tiers.Where(t => t.Tier != "host").ToList();
        tiers.Add(new TierDemand("host", d.HostNeedBytes, d.HostBudgetBytes,
            $"the chunks not on disk + staging buffers ({d.OptimizerChunksOnDisk} optimizer and {d.ParamChunksOnDisk} parameter chunks on disk)"));
        tiers.Add(new TierDemand("disk", d.DiskBytes, d.DiskBudgetBytes, "chunk files, each chunk rounded up to 4 KiB"));
        var withDisk = new MemoryEstimate(m.Request, m.Parameters, m.Layout, m.ModelData, m.Activations, m.WorkingSetBytes, m.WorkingSetModule, tiers);
        if (!withDisk.Fits) withDisk.Knobs = m.Knobs;
        return withDisk;
    }

    /// <summary>A step's compute time from the model FLOPs (<see cref="Gpt.GptConfig.TrainingFlops"/>, all micro-batches)
    /// at <paramref name="tflops"/> sustained.</summary>
    public static double ComputeSeconds(EstimateRequest r, double tflops) =>
        r.Model.TrainingFlops(r.MicroBatch, r.Sequence) * r.GradientAccumulation / (tflops * 1e12);

    private static long CeilDiv(long a, long b) => (a + b - 1) / b;
}
