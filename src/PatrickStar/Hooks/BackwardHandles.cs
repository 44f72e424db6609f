using static TorchSharp.torch;

namespace PatrickStar.Hooks;

/// <summary>
/// Frees the managed handles a custom backward creates as soon as libtorch no longer needs them.
/// <para>
/// TorchSharp wraps every gradient it hands to a custom backward, every saved tensor it unpacks and every
/// gradient the backward returns in a managed handle registered in the caller's dispose scope, which is the
/// trainer's micro-step scope. Left there, each handle keeps its tensor alive until backward has finished:
/// every layer's incoming gradient, saved activation and input gradient at once, far more than autograd itself
/// keeps. Incoming and saved handles are released when the backward has computed its results; returned ones
/// cannot be (libtorch reads them after the backward returns), so they wait here until the next custom
/// backward starts, by which time libtorch holds its own reference, or until the whole backward is done.
/// </para>
/// </summary>
public static class BackwardHandles
{
    // Per thread: libtorch runs a CPU graph's backward on the thread that called backward(), and ranks trained as
    // threads (the in-process communicator) run their backward passes at the same time: one thread's results must
    // never be released by another's.
    [ThreadStatic] private static List<Tensor>? pending;

    /// <summary>Releases what a backward received (its incoming gradients and unpacked saved tensors).</summary>
    public static void Release(IEnumerable<Tensor?> handles)
    {
        foreach (var t in handles) t?.Dispose();
    }

    /// <summary>Hands a backward's results to libtorch: the previous backward's results are released now.</summary>
    public static List<Tensor> Return(List<Tensor> results)
    {
        var previous = pending;
        pending = new List<Tensor>(results.Count);
        foreach (var r in results)
        {
            if (r is null) continue;
            r.DetachFromDisposeScope();
            pending.Add(r);
        }
        if (previous is not null)
            foreach (var t in previous) t.Dispose();
        return results;
    }

    /// <summary>After backward has returned: nothing of it needs the last results any more.</summary>
    public static void ReleaseReturned()
    {
        var previous = pending;
        pending = null;
        if (previous is not null)
            foreach (var t in previous) t.Dispose();
    }
}
