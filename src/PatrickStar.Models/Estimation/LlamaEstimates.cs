using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Models.Llama;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// LLaMA's parameters, hooked modules and non-model memory from the sizes, for the estimator. The parameter lists follow
/// LlamaForCausalLM's order of first use. The activation figures follow the same accounting as <see cref="ActivationModel"/>
/// (whose constants were measured on GPT) applied to LLaMA's ops; they were derived, not yet measured on LLaMA.
/// </summary>
public static class LlamaEstimates
{
    private static readonly string[] LayerModules =
    {
        "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    };

    /// <summary>Parameter names and element counts in execution order.</summary>
    public static IReadOnlyList<TensorSpec> Parameters(LlamaConfig c)
    {
        long h = c.Hidden, kv = (long)c.KvHeads * c.HeadSize, i = c.Intermediate;
        long[] sizes = { h, h * h, h * kv, h * kv, h * h, h, h * i, h * i, i * h };
        var specs = new List<TensorSpec> { new("model.embed_tokens.weight", (long)c.VocabSize * h) };
        for (int l = 0; l < c.Layers; l++)
            for (int m = 0; m < LayerModules.Length; m++)
                specs.Add(new($"model.layers.{l}.{LayerModules[m]}.weight", sizes[m]));
        specs.Add(new("model.norm.weight", h));
        if (!c.TieEmbeddings) specs.Add(new("lm_head.weight", (long)c.VocabSize * h));
        return specs;
    }

    /// <summary>The modules the chunk engine hooks, each with the parameters it needs on the device.</summary>
    public static IReadOnlyList<GptModuleSpec> Modules(LlamaConfig c)
    {
        var modules = new List<GptModuleSpec> { new("model.embed_tokens", new[] { "model.embed_tokens.weight" }) };
        for (int l = 0; l < c.Layers; l++)
            modules.AddRange(LayerModules.Select(m => new GptModuleSpec($"model.layers.{l}.{m}", new[] { $"model.layers.{l}.{m}.weight" })));
        modules.Add(new("model.norm", new[] { "model.norm.weight" }));
        modules.Add(new("lm_head", new[] { c.TieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight" }));
        return modules;
    }

    /// <summary>
    /// Kept by one decoder layer for backward, per token (x e): the two RMSNorms' inputs and outputs (4h), the rotated q
    /// and the key/value heads repeated to every query head (3h, what attention saves), the attention output and its
    /// contiguous copy (2h), and the SwiGLU's gate, silu(gate), up and their product (4·intermediate); plus attention's
    /// fp32 log-sum-exp per head.
    /// </summary>
    private static long LayerBytes(LlamaConfig c, Precision precision, long batch, long seq) =>
        (9L * c.Hidden + 4L * c.Intermediate) * batch * seq * ActivationModel.ActivationBytes(precision) + 4 * batch * c.Heads * seq;

    public static ActivationEstimate Activations(LlamaConfig c, Precision precision, long batch, long seq, bool checkpointing, bool chunked,
        bool hostLoss = false)
    {
        long e = ActivationModel.ActivationBytes(precision);
        long t = batch * seq, h = c.Hidden, v = c.VocabSize, l = c.Layers;
        long layer = LayerBytes(c, precision, batch, seq);
        // Token ids (input, target, the embedding's copy), the final norm's input; then what the blocked head + loss keeps.
        long body = 3 * t * 8 + t * h * e + (checkpointing ? l * t * h * e : l * layer);
        long forwardSaved = body + HeadLossEstimate.Kept(t, h, v, precision);
        long atLoss = body + HeadLossEstimate.ForwardPeak(t, h, v, precision, hostLoss);
        // Gradients in flight through a layer (about 11 hidden-sized and 3 intermediate-sized per token), the largest fresh
        // weight gradient (an MLP matrix) and, with checkpointing, the layer being recomputed.
        long atLayers = body + (12 * h + 3L * c.Intermediate) * t * e + h * c.Intermediate * e + (checkpointing ? 5 * layer / 4 : 0);
        return atLoss >= atLayers
            ? new ActivationEstimate(forwardSaved, atLoss, "the LM head and loss (blocked; gradients made in forward)")
            : new ActivationEstimate(forwardSaved, atLayers, checkpointing ? "backward through a recomputed layer" : "backward through the layers");
    }

    /// <summary>The chunk engine's stretches of non-model memory, as <see cref="ActivationModel.Phases"/> models GPT's.</summary>
    public static IReadOnlyList<NonModelPhase> Phases(LlamaConfig c, Precision precision, long batch, long seq, bool checkpointing, bool hostLoss = false)
    {
        long e = ActivationModel.ActivationBytes(precision), ep = ActivationModel.ParameterBytes(precision);
        long t = batch * seq, h = c.Hidden, v = c.VocabSize;
        bool upcast = ep != e;
        long saved = Activations(c, precision, batch, seq, checkpointing, chunked: true).Saved;
        long body = saved - HeadLossEstimate.Kept(t, h, v, precision), table = v * h;
        long WeightGradient(long elements) => upcast ? elements * (e + e + ep) : elements * ep;
        long loss = body + HeadLossEstimate.ForwardPeak(t, h, v, precision, hostLoss);
        long head = saved;
        long embedding = body + table * e + (upcast ? table * ep : 0);
        long layers = body + (12 * h + 3L * c.Intermediate) * t * e + WeightGradient(h * c.Intermediate) +
                      (checkpointing ? LayerBytes(c, precision, batch, seq) : 0);
        return new NonModelPhase[]
        {
            new("the LM head and loss (blocked; gradients made in forward)", loss, "lm_head"),
            new("the LM head's backward (hands over the gradients)", head, "model.norm"),
            new(checkpointing ? "backward through a recomputed layer" : "backward through the layers", layers, null),
            new("the embedding's backward (its dense gradient)", embedding, "model.embed_tokens"),
        };
    }
}
