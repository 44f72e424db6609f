using PatrickStar.Chunks;
using PatrickStar.Memory;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Packs a model built with placeholder parameters (<see cref="ParameterPlaceholders"/>): each parameter is initialised
/// directly in its fp32 master slot, in <c>named_parameters()</c> order, the order the model's own construction draws
/// its random numbers in, so the values equal those of a normally built model while only the chunks hold memory. A
/// chunk gets its payloads when its first parameter is initialised and is finished (compute-precision copy made,
/// parameters bound to their slots) when its last one is.
/// </summary>
internal static class StreamedPacking
{
    /// <param name="disk">The disk tier, if any: it makes host room before a chunk gets its payloads and may spill the
    /// chunk once it is finished, so a model larger than the host budget is built chunk by chunk.</param>
    public static void Pack(ChunkLists chunks, IReadOnlyList<ManagedParameter> ordered, ScalarType computeType, TierMemory host,
        Action<Chunk> bindReleased, IEnumerable<(string Name, Parameter Parameter)> namedParameters, IParameterInitializer initializer,
        DiskPlacement? disk = null)
    {
        using var _ = no_grad();
        // The order pass ran the model on placeholders, and a matmul materialises a placeholder weight whole: give those
        // temporaries back before the chunks take their memory, or they stay resident beside them.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Runtime.NativeAllocator.Trim();
        var byChunk = ordered.ToLookup(mp => mp.Place.Chunk);
        var managed = ordered.ToDictionary(mp => mp.Parameter, (IEqualityComparer<Parameter>)ReferenceEqualityComparer.Instance);
        var pending = new int[chunks.Count];
        for (int i = 0; i < chunks.Count; i++)
        {
            chunks.AddReleased(i, computeType);
            var param = chunks.Param[i];
            param.Tensors.AddRange(byChunk[i]);
            pending[i] = param.Tensors.Count;
            if (!chunks.HasState(i)) bindReleased(param);
        }
        foreach (var (name, p) in namedParameters)
        {
            var mp = managed[p];
            int i = mp.Place.Chunk;
            if (!chunks.HasState(i))
            {
                initializer.SkipParameter(name, p); // another rank keeps this chunk
                continue;
            }
            if (chunks.Master[i].Payload is null)
            {
                disk?.BeforePacking(i);
                chunks.AttachState(i, host);
            }
            using (var slot = chunks.Master[i].Slot(mp.Place))
            using (var target = slot.view(mp.Shape))
                initializer.InitializeParameter(name, p, target);
            if (--pending[i] == 0) Finish(chunks, i, computeType, disk);
        }
        for (int i = 0; i < chunks.Count; i++)
            if (chunks.HasState(i) && pending[i] > 0)
                throw new InvalidOperationException($"chunk {i}: {pending[i]} of its parameters are not among the model's named parameters, so they were never initialised.");
    }

    private static void Finish(ChunkLists chunks, int index, ScalarType computeType, DiskPlacement? disk)
    {
        long used = chunks.Used(index);
        using (var master = chunks.Master[index].UsedPart(used))
        using (var param = chunks.Param[index].UsedPart(used))
        {
            param.copy_(master);
            // A model converted with .to(computeType) gives the masters its rounded values: so do these.
            if (computeType != ScalarType.Float32) master.copy_(param);
        }
        ChunkMover.Rebind(chunks.Param[index]);
        disk?.AfterPacking(index);
    }
}
