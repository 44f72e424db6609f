using PatrickStar.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Layers;

/// <summary>
/// Makes a model of standard layers trainable by the chunk engine: each nn.Linear, nn.Embedding and nn.LayerNorm is
/// swapped for its chunk-aware twin (<see cref="ChunkLinear"/>, ...) over the same Parameter objects, under the same name,
/// so parameter names, state_dict keys and optimizer references are unchanged. Any other module that owns parameters
/// must itself be chunk-aware (<see cref="INamedLayer"/>); otherwise the model is refused, naming the module.
/// </summary>
public static class ChunkAwareModel
{
    /// <summary>Swaps the standard layers of <paramref name="model"/> in place and checks the rest; idempotent.</summary>
    /// <exception cref="NotSupportedException">A parameterised module that the engine cannot manage, with what to do.</exception>
    public static void Prepare(Module model)
    {
        var done = new Dictionary<Module, Module>(ReferenceEqualityComparer.Instance);
        Visit(model, "", done);
        foreach (var (path, module) in model.named_modules().Prepend(("", model)))
        {
            if (module is INamedLayer layer)
            {
                if (path.Length > 0 && (string.IsNullOrEmpty(layer.Path) || layer.Path == module.GetType().Name)) layer.Path = path;
                continue;
            }
            if (module.named_parameters(recurse: false).Any())
                throw new NotSupportedException($"module '{(path.Length > 0 ? path : "(the model)")}' ({module.GetType().Name}) owns parameters the chunk engine cannot manage: " +
                                                "build it from Linear, Embedding, LayerNorm or PatrickStar.Layers.ChunkRmsNorm, or make it a chunk-aware layer (README, \"A chunk-aware layer of your own\").");
        }
    }

    private static void Visit(Module parent, string prefix, Dictionary<Module, Module> done)
    {
        foreach (var (name, child) in parent.named_children().ToList())
        {
            string path = prefix + name;
            if (!done.TryGetValue(child, out var twin))
            {
                twin = Twin(child, path) ?? child;
                done[child] = twin;
                if (ReferenceEquals(twin, child)) Visit(child, path + ".", done);
            }
            if (ReferenceEquals(twin, child)) continue;
            ModuleSwap.Replace(parent, name, child, twin, path);
            GC.SuppressFinalize(child); // TorchSharp's LayerNorm finalizer would dispose the parameters the twin now uses
        }
    }

    /// <summary>The chunk-aware twin of a standard parameterised layer, or null when <paramref name="module"/> is not one.</summary>
    private static Module? Twin(Module module, string path)
    {
        var own = module.named_parameters(recurse: false).ToDictionary(p => p.name, p => p.parameter);
        switch (module)
        {
            case TorchSharp.Modules.Linear:
                return new ChunkLinear(own["weight"], own.GetValueOrDefault("bias"));
            case TorchSharp.Modules.LayerNorm norm when own.Count == 0:
                return null; // no parameters (elementwise_affine: false): nothing to manage
            case TorchSharp.Modules.LayerNorm norm:
                if (norm.normalized_shape.Length != 1)
                    throw new NotSupportedException($"module '{path}' (LayerNorm) normalises over {norm.normalized_shape.Length} dimensions; " +
                                                    "the chunk engine's LayerNorm normalises over the last one: reshape so that it is the only one.");
                return new ChunkLayerNorm(own["weight"], own.GetValueOrDefault("bias"), norm.eps);
            case TorchSharp.Modules.Embedding embedding:
                var options = EmbeddingOptions.Probe(embedding, own["weight"]);
                if (options.MaxNorm || options.ScaleGradByFrequency || options.Sparse)
                    throw new NotSupportedException($"module '{path}' (Embedding) uses max_norm, scale_grad_by_freq or sparse, which the chunk engine's " +
                                                    "embedding does not support: remove the option, or make a chunk-aware layer (README).");
                return new ChunkEmbedding(own["weight"], options.PaddingIndex);
            default:
                return null;
        }
    }
}
