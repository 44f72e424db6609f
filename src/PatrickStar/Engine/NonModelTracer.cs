using PatrickStar.Memory;
using PatrickStar.Profiling;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Counts the moments of an iteration and measures the non-model memory at each. The first training iteration is
/// the warm-up: a sampler records the peak between moments, and the trace keeps, per moment, that peak and the
/// chunks accessed; later iterations read the allocator at each moment and must repeat the warm-up's moments.
/// </summary>
internal sealed class NonModelTracer : IDisposable
{
    private readonly Device device;
    private readonly TierMemory deviceTier;
    private readonly TierMemory hostTier;
    private readonly IterationCounters iteration;
    private PeakSampler? sampler;
    private bool iterationStarted;
    private long baselineBytes;

    public NonModelTracer(Device device, TierMemory deviceTier, TierMemory hostTier, IterationCounters iteration)
    {
        this.device = device;
        this.deviceTier = deviceTier;
        this.hostTier = hostTier;
        this.iteration = iteration;
    }

    public MomentTrace Trace { get; } = new();
    public bool WarmingUp { get; private set; } = true;

    /// <summary>Index of the current moment in the iteration; -1 before the first.</summary>
    public int Moment { get; private set; } = -1;

    /// <summary>The current moment in words ("PreForward of h.0.attn"), for messages.</summary>
    public string Label { get; private set; } = "start";

    /// <summary>Iterations ended so far.</summary>
    public int IterationIndex { get; private set; }

    /// <summary>Non-model bytes measured at the current moment.</summary>
    public long LastNonModel { get; private set; }

    /// <summary>Largest non-model bytes measured at any moment of any iteration so far.</summary>
    public long PeakNonModelObserved { get; private set; }

    /// <summary>What the process held before training (the dataset, libtorch itself); on a GPU it would not be on the device.</summary>
    public long BaselineBytes => baselineBytes;

    /// <summary>How the non-model figure of the current moment was read (error messages name it).</summary>
    public string NonModelSource => WarmingUp ? "the peak sampled since the previous moment" : "measured at this moment";

    /// <summary>Reads what the process holds besides the chunks now, before training starts.</summary>
    public void TakeBaseline() => baselineBytes = Math.Max(0, MemoryMeter.NativeInUse() - deviceTier.UsedBytes - hostTier.UsedBytes);

    /// <summary>
    /// A moment begins. Returns its non-model bytes, or null outside training (evaluation passes are not traced,
    /// except the optimizer step). <paramref name="iterationBegins"/> runs when this is the iteration's first moment.
    /// </summary>
    public long? Enter(MomentKind kind, string module, bool training, Action iterationBegins)
    {
        Label = $"{kind} of {module}";
        if (!training && kind != MomentKind.OptimizerStep) return null;
        if (!iterationStarted)
        {
            iterationStarted = true;
            iteration.Reset();
            iterationBegins();
            if (WarmingUp)
            {
                sampler = new PeakSampler();
                sampler.Start();
            }
        }
        long nonModel = NonModelBytes(WarmingUp ? sampler!.TakePeak() : MemoryMeter.NativeInUse());
        if (WarmingUp)
        {
            if (Moment >= 0) Trace.RecordNonModel(nonModel);
            Moment = Trace.BeginMoment(kind, module);
        }
        else
        {
            Moment++;
            Trace.CheckSameShape(Moment, kind, module);
        }
        iteration.PeakNonModel = Math.Max(iteration.PeakNonModel, nonModel);
        PeakNonModelObserved = Math.Max(PeakNonModelObserved, nonModel);
        LastNonModel = nonModel;
        return nonModel;
    }

    /// <summary>Records that the current moment uses chunk <paramref name="index"/> (warm-up of training only).</summary>
    public void RecordAccess(int index, bool training)
    {
        if (WarmingUp && training) Trace.RecordAccess(index);
    }

    /// <summary>The warm-up iteration ends: its last non-model peak goes into the trace, which is complete from now on.</summary>
    public void FinishWarmup()
    {
        Trace.RecordNonModel(NonModelBytes(sampler!.TakePeak()));
        sampler.Dispose();
        sampler = null;
        Trace.Complete();
        WarmingUp = false;
    }

    /// <summary>An iteration ends; after the warm-up it must have had the warm-up's number of moments.</summary>
    public void EndIteration(bool checkLength)
    {
        if (checkLength) Trace.CheckIterationLength(Moment + 1);
        Moment = -1;
        iterationStarted = false;
        IterationIndex++;
    }

    /// <summary>
    /// Non-model memory = what the allocator has handed out minus every chunk buffer (both tiers, pools included),
    /// minus what the process held before training.
    /// </summary>
    private long NonModelBytes(long allocatorInUse)
    {
        if (device.type != DeviceType.CPU) return 0; // libtorch's CUDA allocator statistics are not reachable from TorchSharp
        return Math.Max(0, allocatorInUse - deviceTier.UsedBytes - hostTier.UsedBytes - baselineBytes);
    }

    public void Dispose() => sampler?.Dispose();
}
