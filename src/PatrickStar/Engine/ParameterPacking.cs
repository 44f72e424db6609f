using PatrickStar.Chunks;
using PatrickStar.Hooks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Engine;

/// <summary>Packs a model's parameters into chunks, in the order of their first use; each parameter becomes a view into its slot.</summary>
internal static class ParameterPacking
{
    internal sealed record OrderedParameter(string Name, Parameter Parameter);

    /// <summary>Parameters in the order of their first use, found by one forward pass with recording hooks.</summary>
    public static List<OrderedParameter> ExecutionOrder(Module<Tensor, Tensor> model, Tensor? sampleInput)
    {
        var names = new Dictionary<Parameter, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in model.named_parameters()) names[p] = name;
        var order = new List<OrderedParameter>();
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        if (sampleInput is not null)
        {
            var handles = new List<Action>();
            foreach (var (_, module) in model.named_modules())
            {
                if (module is not Module<Tensor, Tensor> m) continue;
                var own = ParametersOf(module).ToList();
                if (own.Count == 0) continue;
                var handle = m.register_forward_pre_hook((_, x) =>
                {
                    foreach (var p in own)
                        if (seen.Add(p)) order.Add(new OrderedParameter(names[p], p));
                    return x;
                });
                handles.Add(() => handle.remove());
            }
            // In eval mode, so that dropout draws nothing from the random stream the training run will use.
            bool wasTraining = model.training;
            model.eval();
            using (no_grad())
            using (var scope = NewDisposeScope())
                model.call(sampleInput);
            if (wasTraining) model.train();
            foreach (var unhook in handles) unhook();
        }
        // Parameters the sample pass did not reach keep their registration order, after the others.
        foreach (var (name, p) in model.named_parameters())
            if (seen.Add(p)) order.Add(new OrderedParameter(name, p));
        return order;
    }

    /// <summary>A module's own parameters (not its children's), plus any it uses from elsewhere (tied weights).</summary>
    public static IEnumerable<Parameter> ParametersOf(Module module)
    {
        foreach (var (_, p) in module.named_parameters(recurse: false)) yield return p;
        if (module is ISharedParameterUser shared)
            foreach (var p in shared.SharedParameters) yield return p;
    }

    private const long CollectEveryBytes = 256L << 20;

    /// <summary>
    /// Fills the chunk lists: chunk by chunk, its parameters move into it and their own storage is freed at once, so
    /// packing never holds the model twice (the peak is the chunks plus the parameters not yet moved, not 20 B/param).
    /// This rank's chunks get the values (fp32 masters, and their compute-precision copy); other ranks' chunks stay
    /// released, their parameters bound to nothing until fetched. With a disk tier, chunks spill to disk as the host budget requires.
    /// </summary>
    public static void Pack(ChunkLists chunks, IReadOnlyList<ManagedParameter> ordered, ScalarType computeType, Memory.TierMemory host,
        Action<Chunk> bindReleased, DiskPlacement? disk = null)
    {
        using var _ = no_grad();
        var byChunk = ordered.ToLookup(mp => mp.Place.Chunk);
        long movedSinceCollect = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            disk?.BeforePacking(i);
            chunks.Add(i, computeType, host);
            var param = chunks.Param[i];
            var master = chunks.Master[i];
            param.Tensors.AddRange(byChunk[i]);
            if (!chunks.HasState(i))
            {
                bindReleased(param);
                continue;
            }
            foreach (var mp in param.Tensors)
            {
                using var source = mp.Parameter.detach().reshape(-1);
                using var slot = master.Slot(mp.Place);
                slot.copy_(source);
            }
            using (var used = master.UsedPart(chunks.Used(i)))
            using (var target = param.UsedPart(chunks.Used(i)))
                target.copy_(used); // the compute-precision copy of the masters
            ChunkMover.Rebind(param);
            disk?.AfterPacking(i);
            // A parameter's former storage can be held by the tensor it was made from until that tensor is finalized:
            // collect every so often, or the whole model stays beside its chunks until packing ends (measured: +4 B/param at the peak).
            if ((movedSinceCollect += master.Bytes) < CollectEveryBytes) continue;
            movedSinceCollect = 0;
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
