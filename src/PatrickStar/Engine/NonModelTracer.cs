using PatrickStar.Memory;
using PatrickStar.Profiling;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Counts the moments of an iteration and measures the non-model memory at each. The first training iteration is
/// the warm-up: the allocator reading's peak between moments (<see cref="INonModelMemoryReader"/>), and the trace keeps, per moment, that peak and the
/// chunks accessed; later iterations read the allocator at each moment and must repeat the warm-up's moments.
/// </summary>
internal sealed class NonModelTracer : IDisposable
{
    private readonly TierMemory deviceTier;
    private readonly TierMemory hostTier;
    private readonly IterationCounters iteration;
    private readonly INonModelMemoryReader memory;
    private bool iterationStarted;
    private long baselineBytes;

    /// <param name="memory">The allocator reading (<see cref="NonModelMemory.For"/>: glibc on a CPU, the caching allocator on CUDA); the tracer disposes it.</param>
    public NonModelTracer(TierMemory deviceTier, TierMemory hostTier, IterationCounters iteration, INonModelMemoryReader memory)
    {
        this.memory = memory;
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

    /// <summary>What the allocator held besides the chunks before training (on a CPU the dataset and libtorch itself; on CUDA what was allocated on the device).</summary>
    public long BaselineBytes => baselineBytes;

    /// <summary>How the non-model figure of the current moment was read (error messages name it).</summary>
    public string NonModelSource => (WarmingUp ? "the peak since the previous moment" : "measured at this moment") + $" of {memory.Source}";

    /// <summary>Reads what the process holds besides the chunks now, before training starts.</summary>
    public void TakeBaseline() => baselineBytes = Math.Max(0, memory.Current() - ChunkBytesRead());

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
            if (WarmingUp) memory.StartPeaks();
        }
        long nonModel = NonModelBytes(WarmingUp ? memory.TakePeak() : memory.Current());
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
        Trace.RecordNonModel(NonModelBytes(memory.TakePeak()));
        memory.EndPeaks();
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
    /// Non-model memory = what the allocator has handed out minus every chunk buffer it holds (the device tier's, and the
    /// host tier's too when that is the same allocator; pools included), minus what was held before training. 0 when the
    /// allocator cannot be read (CUDA without its statistics: warned once when the reader was chosen).
    /// </summary>
    private long NonModelBytes(long allocatorInUse) =>
        memory.Measures ? Math.Max(0, allocatorInUse - ChunkBytesRead() - baselineBytes) : 0;

    /// <summary>The chunk buffers inside the allocator's reading.</summary>
    private long ChunkBytesRead() => deviceTier.UsedBytes + (memory.IncludesHostTier ? hostTier.UsedBytes : 0);

    public void Dispose() => memory.Dispose();
}
