using PatrickStar.Models.Gpt;

namespace PatrickStar.Models.Llama;

/// <summary>A named LLaMA-family size.</summary>
public sealed record LlamaPreset(string Name, LlamaConfig Config, string Description);

/// <summary>The named LLaMA-family sizes: a tiny one for tests and the published shapes.</summary>
public static class LlamaZoo
{
    private static readonly RopeScaling Llama31Scaling = new(Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192);

    public static IReadOnlyList<LlamaPreset> Presets { get; } = new[]
    {
        // GPT-2's vocabulary: the tokenizer this project ships, so that it trains on the same data as the GPT presets.
        new LlamaPreset("llama-tiny", new LlamaConfig(GptConfig.Gpt2VocabSize, 128, 2, 64, 4, 2, 176), "for tests: grouped-query attention, a few MB"),
        new LlamaPreset("tinyllama-1.1b", new LlamaConfig(32000, 2048, 22, 2048, 32, 4, 5632), "TinyLlama-1.1B"),
        new LlamaPreset("llama-2-7b", new LlamaConfig(32000, 4096, 32, 4096, 32, 32, 11008), "Llama-2-7B"),
        new LlamaPreset("llama-2-13b", new LlamaConfig(32000, 4096, 40, 5120, 40, 40, 13824), "Llama-2-13B"),
        new LlamaPreset("llama-2-70b", new LlamaConfig(32000, 4096, 80, 8192, 64, 8, 28672), "Llama-2-70B"),
        new LlamaPreset("llama-3-8b", new LlamaConfig(128256, 8192, 32, 4096, 32, 8, 14336, RopeTheta: 500000), "Llama-3-8B"),
        new LlamaPreset("llama-3.1-8b", new LlamaConfig(128256, 131072, 32, 4096, 32, 8, 14336, RopeTheta: 500000, Scaling: Llama31Scaling),
            "Llama-3.1-8B: Llama-3 rotary frequency scaling"),
    };

    /// <summary>The LLaMA preset of that name, or null when the name is not a LLaMA preset.</summary>
    public static LlamaPreset? Find(string? name) =>
        name is null ? null : Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
}
