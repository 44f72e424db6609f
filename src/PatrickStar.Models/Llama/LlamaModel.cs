using PatrickStar.Chunks;
using PatrickStar.Hooks;
using PatrickStar.Models.Generation;
using PatrickStar.Models.Gpt;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models.Llama;

/// <summary>HF's LlamaModel: token embedding, decoder layers and the final RMSNorm.</summary>
public sealed class LlamaBackbone : Module<Tensor, Tensor>
{
    private readonly GptEmbedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRmsNorm norm;

    public LlamaBackbone(LlamaConfig c) : base(nameof(LlamaBackbone))
    {
        embed_tokens = new GptEmbedding(c.VocabSize, c.Hidden);
        var inverseFrequencies = Rope.InverseFrequencies(c.HeadSize, c.RopeTheta, c.Scaling);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.Layers).Select(_ => new LlamaDecoderLayer(c, inverseFrequencies)).ToArray());
        norm = new LlamaRmsNorm(c.Hidden, c.RmsEps);
        RegisterComponents();
    }

    public GptEmbedding TokenEmbedding => embed_tokens;
    public int LayerCount => layers.Count;

    /// <summary>Run each layer under activation checkpointing (recomputed in backward).</summary>
    public bool CheckpointBlocks { get; set; }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed_tokens.call(ids);
        foreach (var layer in layers) x = CheckpointBlocks ? ActivationCheckpoint.Run(layer, x) : layer.call(x);
        return norm.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>The tokens of ids continue at position cache.Length; their keys and values join the cache.</summary>
    public Tensor Forward(Tensor ids, KvCache cache)
    {
        cache.EnsureRoom(ids.shape[1]);
        using var scope = NewDisposeScope();
        var x = embed_tokens.call(ids);
        for (int i = 0; i < layers.Count; i++) x = layers[i].Forward(x, cache.Layer(i));
        return norm.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A LLaMA-family language model (HF's LlamaForCausalLM, same parameter names): token ids [B, T] in, logits
/// [B, T, vocab] out. With tie_word_embeddings the head is the token embedding and registers no lm_head.weight.
/// </summary>
public sealed class LlamaForCausalLM : Module<Tensor, Tensor>, ICausalLm, IParameterInitializer, PatrickStar.Training.ILanguageModelLoss
{
    private readonly LlamaBackbone model;
    private readonly LmHead lm_head;

    public LlamaConfig Config { get; }

    /// <summary>
    /// Builds the model on the CPU in fp32 with HF's initialisation, N(0, 0.02) (seed torch first for determinism); inside a
    /// <see cref="ParameterPlaceholders.Scope"/> the parameters are placeholders, left for the chunk engine to initialise.
    /// </summary>
    public LlamaForCausalLM(LlamaConfig config) : base(nameof(LlamaForCausalLM))
    {
        config.Validate();
        Config = config;
        model = new LlamaBackbone(config);
        lm_head = config.TieEmbeddings ? new TiedLmHead(model.TokenEmbedding) : new UntiedLmHead(config.Hidden, config.VocabSize);
        RegisterComponents();
        foreach (var (name, module) in named_modules())
            if (module is INamedLayer layer && name.Length > 0) layer.Path = name;
        if (ParameterPlaceholders.Active) return; // the chunk engine initialises each parameter in its slot
        foreach (var (name, p) in named_parameters()) InitializeParameter(name, p, p);
    }

    /// <summary>HF's LLaMA initialisation: N(0, 0.02), norm scales 1.</summary>
    public void InitializeParameter(string name, Parameter parameter, Tensor target)
    {
        using var _ = no_grad();
        if (name.EndsWith("norm.weight")) target.fill_(1.0);
        else nn.init.normal_(target, 0.0, 0.02);
    }

    public LlamaBackbone Backbone => model;

    /// <summary>The dtype activations run in; null: the parameters' (see GptModel.ActivationType).</summary>
    public ScalarType? ActivationType
    {
        get => model.TokenEmbedding.OutputType;
        set => model.TokenEmbedding.OutputType = value;
    }

    public int VocabSize => Config.VocabSize;
    public int ContextLength => Config.ContextLength;
    public Module<Tensor, Tensor> Network => this;
    public KvCache NewCache() => new(Config.Layers, Config.ContextLength);

    public override Tensor forward(Tensor ids)
    {
        EnsureInput(ids, 0);
        using var hidden = model.call(ids);
        return lm_head.call(hidden);
    }

    /// <summary>The mean next-token loss, computed with the head in row blocks: the batch's logits never exist.</summary>
    public Tensor Loss(Tensor ids, Tensor targets)
    {
        EnsureInput(ids, 0);
        using var hidden = model.call(ids);
        return lm_head.Loss(hidden, targets);
    }

    public Tensor Forward(Tensor ids, KvCache cache)
    {
        EnsureInput(ids, cache.Length);
        using var hidden = model.Forward(ids, cache);
        return lm_head.call(hidden);
    }

    private void EnsureInput(Tensor ids, long past)
    {
        if (ids.shape.Length != 2)
            throw new ArgumentException($"LLaMA input must be token ids of shape [batch, time]; got [{string.Join(", ", ids.shape)}].");
        if (past + ids.shape[1] > Config.ContextLength)
            throw new ArgumentException($"sequence length {past + ids.shape[1]} exceeds the model's context length max_position_embeddings = {Config.ContextLength}.");
    }
}
