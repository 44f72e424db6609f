using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using PatrickStar.Chunks;
using PatrickStar.Hooks;
using PatrickStar.Models.Generation;
using F = TorchSharp.torch.nn.functional;

namespace PatrickStar.Models.Gpt;

// A GPT-2 decoder, laid out so that its parameter names and shapes are exactly Hugging Face's
// GPT2LMHeadModel ("transformer.h.0.attn.c_attn.weight" with Conv1D layout [in, out], ...), which
// lets HF checkpoints load without renaming. Every submodule is invoked through .call(...) so that
// forward hooks (which the chunk engine relies on) fire. Field names below are the parameter names.

/// <summary>HF's Conv1D: a linear layer whose weight is stored [in, out] (y = x·W + b).</summary>
public sealed class Conv1D : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly long inFeatures, outFeatures;

    public Conv1D(long inFeatures, long outFeatures) : base(nameof(Conv1D))
    {
        this.inFeatures = inFeatures;
        this.outFeatures = outFeatures;
        weight = new Parameter(ParameterPlaceholders.Empty(inFeatures, outFeatures));
        bias = new Parameter(ParameterPlaceholders.Zeros(outFeatures));
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public Parameter Bias => bias;
    public string Path { get; set; } = nameof(Conv1D);

    public override Tensor forward(Tensor x)
    {
        using var flat = x.reshape(-1, inFeatures);
        using var y = ParameterOps.Addmm(flat, weight, bias, Path);
        var shape = x.shape.ToArray();
        shape[^1] = outFeatures;
        return y.view(shape);
    }
}

/// <summary>LayerNorm over the hidden dimension with HF's parameter names (weight, bias).</summary>
public sealed class GptLayerNorm : Module<Tensor, Tensor>, INamedLayer
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly double eps;

    public GptLayerNorm(long hidden, double eps = 1e-5) : base(nameof(GptLayerNorm))
    {
        this.eps = eps;
        weight = new Parameter(ParameterPlaceholders.Ones(hidden));
        bias = new Parameter(ParameterPlaceholders.Zeros(hidden));
        RegisterComponents();
    }

    public string Path { get; set; } = nameof(GptLayerNorm);

    public override Tensor forward(Tensor x) => ParameterOps.LayerNorm(x, weight, bias, eps, Path);
}

/// <summary>An embedding table (HF's wte / wpe): rows picked by token or position ids.</summary>
public sealed class GptEmbedding : Module<Tensor, Tensor>, INamedLayer, IValueFreeBackward
{
    private readonly Parameter weight;

    public GptEmbedding(long count, long hidden) : base(nameof(GptEmbedding))
    {
        weight = new Parameter(ParameterPlaceholders.Empty(count, hidden));
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public string Path { get; set; } = nameof(GptEmbedding);

    /// <summary>The dtype of the looked-up rows; null: the weight's. Every later op follows the activations' dtype.</summary>
    public ScalarType? OutputType { get; set; }

    public override Tensor forward(Tensor ids) => ParameterOps.Embedding(ids, weight, Path, OutputType);
}

/// <summary>The LM head, tied to the token embedding: logits = h·wteᵀ. It registers no parameter of its own.</summary>
public sealed class TiedLmHead : LmHead, ISharedParameterUser
{
    // A delegate, not a field of module or parameter type, so that the embedding is not discovered
    // (and renamed) as a child of the head: it belongs to the transformer.
    private readonly Func<Parameter> weight;

    public TiedLmHead(GptEmbedding embedding) : base(nameof(TiedLmHead))
    {
        weight = () => embedding.Weight;
    }

    public IEnumerable<Parameter> SharedParameters => new[] { weight() };
    protected override Parameter HeadWeight => weight();
}

public sealed partial class CausalSelfAttention : Module<Tensor, Tensor>
{
    private readonly Conv1D c_attn;
    private readonly Conv1D c_proj;
    private readonly Dropout resid_dropout;
    private readonly int heads;
    private readonly double attentionDropout;

    public CausalSelfAttention(GptConfig cfg) : base(nameof(CausalSelfAttention))
    {
        heads = cfg.Heads;
        attentionDropout = cfg.Dropout;
        c_attn = new Conv1D(cfg.Hidden, 3L * cfg.Hidden);
        c_proj = new Conv1D(cfg.Hidden, cfg.Hidden);
        resid_dropout = nn.Dropout(cfg.Dropout);
        RegisterComponents();
    }

    internal Conv1D OutputProjection => c_proj;

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], h = x.shape[2];
        using var scope = NewDisposeScope();
        var qkv = c_attn.call(x);
        double dropout = training ? attentionDropout : 0.0;
        Tensor y;
        using (PatrickStar.Timing.StepPhases.Begin(PatrickStar.Timing.StepPhase.Attention))
        {
            if (BatchedCausalAttention.Applies(qkv.dtype, qkv.device, t, dropout)) y = BatchedCausalAttention.Attend(qkv, heads);
            else
            {
                var parts = qkv.split(h, dim: 2);
                // [B, T, h] -> [B, heads, T, head_size]
                Tensor Heads(Tensor z) => z.view(b, t, heads, h / heads).transpose(1, 2);
                y = F.scaled_dot_product_attention(Heads(parts[0]), Heads(parts[1]), Heads(parts[2]), p: dropout, is_casual: true)
                    .transpose(1, 2).contiguous().view(b, t, h);
            }
        }
        return resid_dropout.call(c_proj.call(y)).MoveToOuterDisposeScope();
    }
}

public sealed class Mlp : Module<Tensor, Tensor>
{
    private readonly Conv1D c_fc;
    private readonly Conv1D c_proj;
    private readonly Dropout dropout;

    public Mlp(GptConfig cfg) : base(nameof(Mlp))
    {
        c_fc = new Conv1D(cfg.Hidden, 4L * cfg.Hidden);
        c_proj = new Conv1D(4L * cfg.Hidden, cfg.Hidden);
        dropout = nn.Dropout(cfg.Dropout);
        RegisterComponents();
    }

    internal Conv1D OutputProjection => c_proj;

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        // GPT-2 uses the tanh approximation of GELU ("gelu_new").
        var y = F.gelu(c_fc.call(x), TorchSharp.Modules.GELU.Approximate.tanh);
        return dropout.call(c_proj.call(y)).MoveToOuterDisposeScope();
    }
}

public sealed partial class Block : Module<Tensor, Tensor>
{
    private readonly GptLayerNorm ln_1;
    private readonly CausalSelfAttention attn;
    private readonly GptLayerNorm ln_2;
    private readonly Mlp mlp;

    public Block(GptConfig cfg) : base(nameof(Block))
    {
        ln_1 = new GptLayerNorm(cfg.Hidden);
        attn = new CausalSelfAttention(cfg);
        ln_2 = new GptLayerNorm(cfg.Hidden);
        mlp = new Mlp(cfg);
        RegisterComponents();
    }

    internal IEnumerable<Conv1D> ResidualProjections => new[] { attn.OutputProjection, mlp.OutputProjection };

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var a = x + attn.call(ln_1.call(x));
        var y = a + mlp.call(ln_2.call(a));
        return y.MoveToOuterDisposeScope();
    }
}

/// <summary>HF's GPT2Model: embeddings, the blocks and the final LayerNorm.</summary>
public sealed partial class GptTransformer : Module<Tensor, Tensor>
{
    private readonly GptEmbedding wte;
    private readonly GptEmbedding wpe;
    private readonly Dropout drop;
    private readonly ModuleList<Block> h;
    private readonly GptLayerNorm ln_f;

    public GptTransformer(GptConfig cfg) : base(nameof(GptTransformer))
    {
        wte = new GptEmbedding(cfg.VocabSize, cfg.Hidden);
        wpe = new GptEmbedding(cfg.ContextLength, cfg.Hidden);
        drop = nn.Dropout(cfg.Dropout);
        h = new ModuleList<Block>(Enumerable.Range(0, cfg.Layers).Select(_ => new Block(cfg)).ToArray());
        ln_f = new GptLayerNorm(cfg.Hidden);
        RegisterComponents();
    }

    /// <summary>Run each block under activation checkpointing (recomputed in backward).</summary>
    public bool CheckpointBlocks { get; set; }

    public GptEmbedding TokenEmbedding => wte;
    public GptEmbedding PositionEmbedding => wpe;
    public IEnumerable<Block> Blocks => h;

    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        long t = idx.shape[1];
        var pos = arange(t, dtype: ScalarType.Int64, device: idx.device);
        var x = drop.call(wte.call(idx) + wpe.call(pos));
        foreach (var block in h) x = CheckpointBlocks ? ActivationCheckpoint.Run(block, x) : block.call(x);
        return ln_f.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// GPT-2 language model (HF's GPT2LMHeadModel): token ids [B, T] in, logits [B, T, vocab] out.
/// The LM head is the token embedding itself (tied), so it has no parameter of its own.
/// </summary>
public sealed partial class GptModel : Module<Tensor, Tensor>, IParameterInitializer, PatrickStar.Training.ILanguageModelLoss
{
    private readonly GptTransformer transformer;
    private readonly TiedLmHead lm_head;

    public GptConfig Config { get; }

    /// <summary>
    /// Builds the model on the CPU in fp32 with GPT-2's initialisation (seed torch first for determinism). Inside a
    /// <see cref="ParameterPlaceholders.Scope"/> the parameters are placeholders, left for the chunk engine to initialise.
    /// </summary>
    public GptModel(GptConfig config) : base(nameof(GptModel))
    {
        config.Validate();
        Config = config;
        transformer = new GptTransformer(config);
        lm_head = new TiedLmHead(transformer.TokenEmbedding);
        RegisterComponents();
        foreach (var (name, module) in named_modules())
            if (module is INamedLayer layer && name.Length > 0) layer.Path = name;
        residualStd = 0.02 / Math.Sqrt(2.0 * Config.Layers);
        foreach (var block in transformer.Blocks)
            foreach (var proj in block.ResidualProjections)
                residual.Add(proj.Weight);
        if (!ParameterPlaceholders.Active) InitializeWeights();
    }

    public GptTransformer Transformer => transformer;

    /// <summary>
    /// The dtype activations (and so every matmul) run in; null: the parameters' dtype. Set to Float32 over bf16
    /// parameters for bf16 storage with fp32 compute: the embeddings emit fp32 and each op upcasts its weight.
    /// </summary>
    public ScalarType? ActivationType
    {
        get => transformer.TokenEmbedding.OutputType;
        set
        {
            transformer.TokenEmbedding.OutputType = value;
            transformer.PositionEmbedding.OutputType = value;
        }
    }

    public override Tensor forward(Tensor idx)
    {
        using var hidden = Hidden(idx);
        return lm_head.call(hidden);
    }

    /// <summary>The mean next-token loss, computed with the head in row blocks: the batch's logits never exist.</summary>
    public Tensor Loss(Tensor idx, Tensor targets)
    {
        using var hidden = Hidden(idx);
        return lm_head.Loss(hidden, targets);
    }

    private Tensor Hidden(Tensor idx)
    {
        if (idx.shape.Length != 2)
            throw new ArgumentException($"GPT input must be token ids of shape [batch, time]; got [{string.Join(", ", idx.shape)}].");
        if (idx.shape[1] > Config.ContextLength)
            throw new ArgumentException($"sequence length {idx.shape[1]} exceeds the model's context length n_positions = {Config.ContextLength}.");
        return transformer.call(idx);
    }

    private readonly HashSet<Parameter> residual = new(ReferenceEqualityComparer.Instance);
    private readonly double residualStd;

    private void InitializeWeights()
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters()) InitializeParameter(name, p, p);
    }

    /// <summary>GPT-2: N(0, 0.02) everywhere, residual output projections scaled by 1/sqrt(2·layers), zero biases.</summary>
    public void InitializeParameter(string name, Parameter parameter, Tensor target)
    {
        using var _ = no_grad();
        if (name.EndsWith(".bias")) target.zero_();
        else if (name.Contains(".ln_")) target.fill_(1.0);
        else nn.init.normal_(target, 0.0, residual.Contains(parameter) ? residualStd : 0.02);
    }
}
