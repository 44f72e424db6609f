using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models;

/// <summary>
/// A configured model's family, chosen by its preset: GPT-2 (the default, and every run given by sizes alone) or LLaMA.
/// <see cref="Sizes"/> are the sizes both families share (vocabulary, context, layers, hidden, heads): what displays,
/// checkpoint manifests and fingerprints record. <see cref="Llama"/> holds the rest of a LLaMA's shape; null for GPT.
/// </summary>
public sealed record ModelChoice(GptConfig Sizes, LlamaConfig? Llama)
{
    public bool IsLlama => Llama is not null;
    public string Family => IsLlama ? "llama" : "gpt2";
    public long ParameterCount => Llama?.ParameterCount ?? Sizes.ParameterCount;
    public double TrainingFlops(long batch, long seq) => Llama?.TrainingFlops(batch, seq) ?? Sizes.TrainingFlops(batch, seq);

    /// <summary>The untrained model (CPU, fp32; seed torch first), with activation checkpointing per block when asked.</summary>
    public Module<Tensor, Tensor> Build(bool checkpointBlocks, ScalarType? activationType)
    {
        if (Llama is not null)
        {
            var llama = new LlamaForCausalLM(Llama) { ActivationType = activationType };
            llama.Backbone.CheckpointBlocks = checkpointBlocks;
            return llama;
        }
        var gpt = new GptModel(Sizes) { ActivationType = activationType };
        gpt.Transformer.CheckpointBlocks = checkpointBlocks;
        return gpt;
    }
}

public static class ModelFamilies
{
    /// <summary>
    /// The model a config describes: a LLaMA (model.family "llama" or a LLaMA preset) from its preset with the config's
    /// sizes and shape keys over it, or every size given; else a GPT (<see cref="ModelZoo.Resolve"/>).
    /// </summary>
    public static ModelChoice Resolve(ModelSection m)
    {
        if (m.Preset is not null && LlamaZoo.Find(m.Preset) is null && !ModelZoo.Presets.Any(p => string.Equals(p.Name, m.Preset, StringComparison.OrdinalIgnoreCase)))
            throw new ArgumentException($"model preset '{m.Preset}' is not known. Known presets: {string.Join(", ", PresetNames)} " +
                                        "(see `pstar models`), or give the sizes (n_layer, n_embd, n_head, n_positions, vocab_size).");
        var preset = LlamaZoo.Find(m.Preset);
        bool llama = m.Family switch
        {
            null => preset is not null,
            "llama" => true,
            "gpt2" when preset is null => false,
            "gpt2" => throw new ConfigException($"model.family = \"gpt2\" but model.preset = '{preset!.Name}' is a LLaMA; drop one of them."),
            _ => throw new ConfigException($"model.family = \"{m.Family}\": use \"gpt2\" or \"llama\" (or null for the preset's family)."),
        };
        if (!llama)
        {
            if (LlamaOnlyKeys(m).FirstOrDefault() is { } key)
                throw new ConfigException($"{key} is set but the model is a GPT-2; it applies to LLaMA models only (model.family \"llama\" or a LLaMA preset): remove it.");
            return new ModelChoice(ModelZoo.Resolve(m.Preset, m.VocabSize, m.ContextLength, m.Layers, m.Hidden, m.Heads, m.Dropout), null);
        }
        if (m.Dropout is > 0)
            throw new ConfigException($"model.dropout = {m.Dropout}: LLaMA models{(preset is null ? "" : $" ('{preset.Name}')")} have no dropout; remove it or set 0.");
        var config = preset?.Config ?? WithoutPreset(m);
        config = config with
        {
            VocabSize = m.VocabSize ?? config.VocabSize, ContextLength = m.ContextLength ?? config.ContextLength, Layers = m.Layers ?? config.Layers,
            Hidden = m.Hidden ?? config.Hidden, Heads = m.Heads ?? config.Heads, KvHeads = m.KvHeads ?? config.KvHeads,
            Intermediate = m.Intermediate ?? config.Intermediate, RopeTheta = m.RopeTheta ?? config.RopeTheta, RmsEps = m.RmsEps ?? config.RmsEps,
            TieEmbeddings = m.TieEmbeddings ?? config.TieEmbeddings, Scaling = ScalingOf(m) ?? config.Scaling,
        };
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ConfigException($"model: {e.Message}", e);
        }
        return new ModelChoice(SharedSizes(config), config);
    }

    /// <summary>HF's default MLP width for a hidden size: 8/3 of it, rounded up to a multiple of 256 (Meta's multiple_of).</summary>
    public static int DefaultIntermediate(int hidden) => (int)((8L * hidden / 3 + 255) / 256 * 256);

    /// <summary>A LLaMA without a preset: every shared size must be given; the rest takes the family's defaults.</summary>
    private static LlamaConfig WithoutPreset(ModelSection m)
    {
        var missing = new (string Key, int? Value)[]
        {
            ("model.vocab_size", m.VocabSize), ("model.n_positions", m.ContextLength), ("model.n_layer", m.Layers), ("model.n_embd", m.Hidden), ("model.n_head", m.Heads),
        }.Where(k => k.Value is null).Select(k => k.Key).ToList();
        if (missing.Count > 0)
            throw new ConfigException($"model.family = \"llama\" without a preset needs every size: {string.Join(", ", missing)} not given; give them or a LLaMA preset (see `pstar models`).");
        int heads = m.Heads!.Value;
        return new LlamaConfig(m.VocabSize!.Value, m.ContextLength!.Value, m.Layers!.Value, m.Hidden!.Value, heads, m.KvHeads ?? heads,
            m.Intermediate ?? DefaultIntermediate(m.Hidden!.Value));
    }

    /// <summary>The config's rope_scaling: null when none of its four keys is set; all four are needed otherwise.</summary>
    private static RopeScaling? ScalingOf(ModelSection m)
    {
        var parts = new (string Key, object? Value)[]
        {
            ("factor", m.RopeScalingFactor), ("low_freq_factor", m.RopeScalingLowFreqFactor), ("high_freq_factor", m.RopeScalingHighFreqFactor),
            ("original_max_position_embeddings", m.RopeScalingOriginalMaxPositions),
        };
        if (parts.All(p => p.Value is null)) return null;
        if (parts.Where(p => p.Value is null).Select(p => "model.rope_scaling." + p.Key).ToList() is { Count: > 0 } missing)
            throw new ConfigException($"model.rope_scaling needs all four keys; {string.Join(", ", missing)} not given.");
        return new RopeScaling(m.RopeScalingFactor!.Value, m.RopeScalingLowFreqFactor!.Value, m.RopeScalingHighFreqFactor!.Value, m.RopeScalingOriginalMaxPositions!.Value);
    }

    /// <summary>The LLaMA-only keys a config sets.</summary>
    private static IEnumerable<string> LlamaOnlyKeys(ModelSection m)
    {
        if (m.KvHeads is not null) yield return "model.num_key_value_heads";
        if (m.Intermediate is not null) yield return "model.intermediate_size";
        if (m.RopeTheta is not null) yield return "model.rope_theta";
        if (m.RmsEps is not null) yield return "model.rms_norm_eps";
        if (m.TieEmbeddings is not null) yield return "model.tie_word_embeddings";
        if (m.RopeScalingFactor is not null || m.RopeScalingLowFreqFactor is not null || m.RopeScalingHighFreqFactor is not null || m.RopeScalingOriginalMaxPositions is not null)
            yield return "model.rope_scaling";
    }

    /// <summary>Sets every LLaMA shape key of <paramref name="m"/> to <paramref name="c"/>'s, so that the config describes exactly that model.</summary>
    public static void Describe(ModelSection m, LlamaConfig c)
    {
        m.Family = "llama";
        m.VocabSize = c.VocabSize;
        m.ContextLength = c.ContextLength;
        m.Layers = c.Layers;
        m.Hidden = c.Hidden;
        m.Heads = c.Heads;
        m.KvHeads = c.KvHeads;
        m.Intermediate = c.Intermediate;
        m.RopeTheta = c.RopeTheta;
        m.RmsEps = c.RmsEps;
        m.TieEmbeddings = c.TieEmbeddings;
        var s = c.Scaling;
        (m.RopeScalingFactor, m.RopeScalingLowFreqFactor, m.RopeScalingHighFreqFactor, m.RopeScalingOriginalMaxPositions) =
            (s?.Factor, s?.LowFreqFactor, s?.HighFreqFactor, s?.OriginalMaxPositions);
    }

    /// <summary>The sizes a LLaMA shares with a GPT's description.</summary>
    public static GptConfig SharedSizes(LlamaConfig c) => new(c.VocabSize, c.ContextLength, c.Layers, c.Hidden, c.Heads);

    /// <summary>Every preset name of every family, for messages.</summary>
    public static IEnumerable<string> PresetNames => ModelZoo.Presets.Select(p => p.Name).Concat(LlamaZoo.Presets.Select(p => p.Name));
}
