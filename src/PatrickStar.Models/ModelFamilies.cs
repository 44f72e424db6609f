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
    /// <summary>The model a config describes: a LLaMA preset with its sizes overridden, or a GPT (<see cref="ModelZoo.Resolve"/>).</summary>
    public static ModelChoice Resolve(ModelSection m)
    {
        if (m.Preset is not null && LlamaZoo.Find(m.Preset) is null && !ModelZoo.Presets.Any(p => string.Equals(p.Name, m.Preset, StringComparison.OrdinalIgnoreCase)))
            throw new ArgumentException($"model preset '{m.Preset}' is not known. Known presets: {string.Join(", ", PresetNames)} " +
                                        "(see `pstar models`), or give the sizes (n_layer, n_embd, n_head, n_positions, vocab_size).");
        if (LlamaZoo.Find(m.Preset) is not { } preset)
            return new ModelChoice(ModelZoo.Resolve(m.Preset, m.VocabSize, m.ContextLength, m.Layers, m.Hidden, m.Heads, m.Dropout), null);
        if (m.Dropout is > 0)
            throw new ConfigException($"model.dropout = {m.Dropout}: LLaMA models ('{preset.Name}') have no dropout; remove it or set 0.");
        var p = preset.Config;
        var llama = p with
        {
            VocabSize = m.VocabSize ?? p.VocabSize, ContextLength = m.ContextLength ?? p.ContextLength, Layers = m.Layers ?? p.Layers,
            Hidden = m.Hidden ?? p.Hidden, Heads = m.Heads ?? p.Heads,
        };
        llama.Validate();
        return new ModelChoice(SharedSizes(llama), llama);
    }

    /// <summary>The sizes a LLaMA shares with a GPT's description.</summary>
    public static GptConfig SharedSizes(LlamaConfig c) => new(c.VocabSize, c.ContextLength, c.Layers, c.Hidden, c.Heads);

    /// <summary>Every preset name of every family, for messages.</summary>
    public static IEnumerable<string> PresetNames => ModelZoo.Presets.Select(p => p.Name).Concat(LlamaZoo.Presets.Select(p => p.Name));
}
