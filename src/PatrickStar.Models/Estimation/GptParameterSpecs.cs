using PatrickStar.Chunks;
using PatrickStar.Models.Gpt;

namespace PatrickStar.Models.Estimation;

/// <summary>A module that owns (or, for the tied LM head, uses) parameters: what the chunk engine hooks.</summary>
public sealed record GptModuleSpec(string Name, IReadOnlyList<string> Parameters);

/// <summary>
/// <see cref="GptModel"/>'s parameters and parameter-owning modules listed from the sizes alone, without
/// building the model: the estimator needs the chunk layout the engine would choose before anything is
/// allocated. The order is the order of first use in forward, which is what the engine packs by.
/// </summary>
public static class GptParameterSpecs
{
    /// <summary>Parameter names (Hugging Face's) and element counts, in execution order.</summary>
    public static IReadOnlyList<TensorSpec> List(GptConfig c)
    {
        long h = c.Hidden;
        var specs = new List<TensorSpec>
        {
            new("transformer.wte.weight", (long)c.VocabSize * h),
            new("transformer.wpe.weight", (long)c.ContextLength * h),
        };
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"transformer.h.{i}.";
            specs.Add(new(p + "ln_1.weight", h));
            specs.Add(new(p + "ln_1.bias", h));
            specs.Add(new(p + "attn.c_attn.weight", h * 3 * h));
            specs.Add(new(p + "attn.c_attn.bias", 3 * h));
            specs.Add(new(p + "attn.c_proj.weight", h * h));
            specs.Add(new(p + "attn.c_proj.bias", h));
            specs.Add(new(p + "ln_2.weight", h));
            specs.Add(new(p + "ln_2.bias", h));
            specs.Add(new(p + "mlp.c_fc.weight", h * 4 * h));
            specs.Add(new(p + "mlp.c_fc.bias", 4 * h));
            specs.Add(new(p + "mlp.c_proj.weight", 4 * h * h));
            specs.Add(new(p + "mlp.c_proj.bias", h));
        }
        specs.Add(new("transformer.ln_f.weight", h));
        specs.Add(new("transformer.ln_f.bias", h));
        return specs;
    }

    /// <summary>The modules the chunk engine hooks, each with the parameters it needs on the device while it computes.</summary>
    public static IReadOnlyList<GptModuleSpec> Modules(GptConfig c)
    {
        static GptModuleSpec M(string name) => new(name, new[] { name + ".weight", name + ".bias" });
        var modules = new List<GptModuleSpec>
        {
            new("transformer.wte", new[] { "transformer.wte.weight" }),
            new("transformer.wpe", new[] { "transformer.wpe.weight" }),
        };
        for (int i = 0; i < c.Layers; i++)
        {
            string p = $"transformer.h.{i}.";
            foreach (var m in new[] { "ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj" })
                modules.Add(M(p + m));
        }
        modules.Add(M("transformer.ln_f"));
        modules.Add(new("lm_head", new[] { "transformer.wte.weight" })); // tied: the head computes with the embedding
        return modules;
    }
}
