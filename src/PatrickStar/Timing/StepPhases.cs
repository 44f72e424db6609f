using System.Diagnostics;

namespace PatrickStar.Timing;

/// <summary>The parts a training step's time is split into (see <see cref="StepPhases"/>).</summary>
public enum StepPhase
{
    /// <summary>The model's matrix products in forward (linear layers and the LM head).</summary>
    ForwardMatmul,
    /// <summary>Scaled dot-product attention in forward.</summary>
    Attention,
    /// <summary>Every other forward op: embeddings, layer norms, GELU, residual adds, the loss.</summary>
    ForwardOther,
    /// <summary>Autograd's backward pass (all of it: libtorch does not split it further).</summary>
    Backward,
    /// <summary>The optimizer step: gradient norm, clipping, Adam, parameter refresh.</summary>
    Optimizer,
    /// <summary>Chunk moves between memory tiers (the chunk engine), wherever in the step they happen.</summary>
    ChunkMovement,
}

/// <summary>
/// Wall time per <see cref="StepPhase"/>, exclusive: a phase timed inside another (a matmul inside forward, a chunk move
/// inside backward) is subtracted from the outer one, so the phases add up to the timed part of a step. Off unless
/// <see cref="Enabled"/>; when off, <see cref="Begin"/> costs one branch. Single-threaded, as the training loop is.
/// On an asynchronous device (CUDA) set <see cref="Synchronize"/>, so that each boundary waits for queued work.
/// </summary>
public static class StepPhases
{
    private static readonly double[] Seconds = new double[Enum.GetValues<StepPhase>().Length];
    private static readonly Stack<(StepPhase Phase, long Start, double Nested)> Open = new();

    public static bool Enabled { get; set; }

    /// <summary>Called at every boundary while enabled: e.g. torch.cuda.synchronize on a GPU; null on a CPU.</summary>
    public static Action? Synchronize { get; set; }

    /// <summary>Starts timing a phase; dispose the result to end it. Does nothing while disabled.</summary>
    public static Scope Begin(StepPhase phase)
    {
        if (!Enabled) return default;
        Synchronize?.Invoke();
        Open.Push((phase, Stopwatch.GetTimestamp(), 0));
        return new Scope(true);
    }

    /// <summary>Seconds per phase since the last call, and resets them.</summary>
    public static IReadOnlyDictionary<StepPhase, double> Take()
    {
        var result = Enum.GetValues<StepPhase>().ToDictionary(p => p, p => Seconds[(int)p]);
        Array.Clear(Seconds);
        return result;
    }

    private static void End()
    {
        Synchronize?.Invoke();
        var (phase, start, nested) = Open.Pop();
        double total = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Seconds[(int)phase] += total - nested;
        if (Open.TryPop(out var outer)) Open.Push(outer with { Nested = outer.Nested + total });
    }

    public readonly struct Scope : IDisposable
    {
        private readonly bool active;
        internal Scope(bool active) { this.active = active; }
        public void Dispose() { if (active) End(); }
    }
}
