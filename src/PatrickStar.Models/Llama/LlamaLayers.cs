using PatrickStar.Chunks;
using PatrickStar.Hooks;
using PatrickStar.Models.Generation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Models.Llama;

// The layers of HF's LlamaForCausalLM, with its parameter names (field names below). Each parameterised layer runs
// through a chunk-aware op (ParameterOps / NormOps) and is invoked with .call(...) so the chunk engine's hooks fire.

/// <summary>A bias-free linear layer with nn.Linear's layout: weight [out, in], y = x·Wᵀ.</summary>
public sealed class LlamaLinear : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;

    public LlamaLinear(long inFeatures, long outFeatures) : base(nameof(LlamaLinear))
    {
        weight = new Parameter(ParameterPlaceholders.Empty(outFeatures, inFeatures));
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(LlamaLinear);

    public override Tensor forward(Tensor x) => ParameterOps.LinearNoBias(x, weight, Path);
}

/// <summary>RMSNorm with a learned scale (HF's LlamaRMSNorm).</summary>
public sealed class LlamaRmsNorm : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly double eps;

    public LlamaRmsNorm(long hidden, double eps) : base(nameof(LlamaRmsNorm))
    {
        this.eps = eps;
        weight = new Parameter(ParameterPlaceholders.Ones(hidden));
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(LlamaRmsNorm);

    public override Tensor forward(Tensor x) => NormOps.RmsNorm(x, weight, eps, Path);
}

/// <summary>Grouped-query self-attention with rotary position embeddings on queries and keys.</summary>
public sealed class LlamaAttention : Module
{
    private readonly LlamaLinear q_proj, k_proj, v_proj, o_proj;
    private readonly int heads, kvHeads, headSize;

    public LlamaAttention(LlamaConfig c) : base(nameof(LlamaAttention))
    {
        heads = c.Heads;
        kvHeads = c.KvHeads;
        headSize = c.HeadSize;
        q_proj = new LlamaLinear(c.Hidden, (long)c.Heads * headSize);
        k_proj = new LlamaLinear(c.Hidden, (long)c.KvHeads * headSize);
        v_proj = new LlamaLinear(c.Hidden, (long)c.KvHeads * headSize);
        o_proj = new LlamaLinear((long)c.Heads * headSize, c.Hidden);
        RegisterComponents();
    }

    /// <summary>x [B, T, h] at positions given by the rotary tables cos, sin [T, d]; with a cache, appends to it.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, LayerKv? cache)
    {
        long b = x.shape[0], t = x.shape[1];
        using var scope = NewDisposeScope();
        Tensor Heads(Tensor z, int n) => z.view(b, t, n, headSize).transpose(1, 2);
        var q = Rope.Apply(Heads(q_proj.call(x), heads), cos, sin);
        var k = Rope.Apply(Heads(k_proj.call(x), kvHeads), cos, sin);
        var v = Heads(v_proj.call(x), kvHeads);
        var y = CausalAttention.Attend(q, k, v, cache, dropout: 0.0);
        y = y.transpose(1, 2).contiguous().view(b, t, (long)heads * headSize);
        return o_proj.call(y).MoveToOuterDisposeScope();
    }
}

/// <summary>SwiGLU: down(silu(gate(x)) · up(x)).</summary>
public sealed class LlamaMlp : Module<Tensor, Tensor>
{
    private readonly LlamaLinear gate_proj, up_proj, down_proj;

    public LlamaMlp(LlamaConfig c) : base(nameof(LlamaMlp))
    {
        gate_proj = new LlamaLinear(c.Hidden, c.Intermediate);
        up_proj = new LlamaLinear(c.Hidden, c.Intermediate);
        down_proj = new LlamaLinear(c.Intermediate, c.Hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(F.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>A pre-norm decoder layer. Called as a module (training) it covers positions 0 .. T - 1.</summary>
public sealed class LlamaDecoderLayer : Module<Tensor, Tensor>
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;
    private readonly LlamaRmsNorm input_layernorm, post_attention_layernorm;
    private readonly double[] inverseFrequencies;

    public LlamaDecoderLayer(LlamaConfig c, double[] inverseFrequencies) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c);
        mlp = new LlamaMlp(c);
        input_layernorm = new LlamaRmsNorm(c.Hidden, c.RmsEps);
        post_attention_layernorm = new LlamaRmsNorm(c.Hidden, c.RmsEps);
        this.inverseFrequencies = inverseFrequencies;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null);

    /// <summary>With a cache, the tokens of x continue at position cache.Length.</summary>
    public Tensor Forward(Tensor x, LayerKv? cache)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = Rope.Tables(inverseFrequencies, cache?.Length ?? 0, x.shape[1], x.dtype, x.device);
        var a = x + self_attn.Forward(input_layernorm.call(x), cos, sin, cache);
        var y = a + mlp.call(post_attention_layernorm.call(a));
        return y.MoveToOuterDisposeScope();
    }
}
