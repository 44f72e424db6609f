namespace PatrickStar.Models.Gpt;

/// <summary>A named model size.</summary>
public sealed record ModelPreset(string Name, GptConfig Config, string Description);

/// <summary>The named GPT sizes: tiny ones for tests and demos, GPT-2's, and those PatrickStar benchmarked.</summary>
public static class ModelZoo
{
    private const int V = GptConfig.Gpt2VocabSize;

    public static IReadOnlyList<ModelPreset> Presets { get; } = new[]
    {
        new ModelPreset("gpt2-tiny", new GptConfig(V, 128, 2, 64, 4), "for tests: a few MB"),
        new ModelPreset("gpt2-mini", new GptConfig(V, 256, 4, 192, 6), "the default: trains visibly in minutes on a CPU"),
        new ModelPreset("gpt2", new GptConfig(V, 1024, 12, 768, 12, 0.1), "GPT-2 small (124M)"),
        new ModelPreset("gpt2-medium", new GptConfig(V, 1024, 24, 1024, 16, 0.1), "GPT-2 medium (355M)"),
        new ModelPreset("gpt2-large", new GptConfig(V, 1024, 36, 1280, 20, 0.1), "GPT-2 large (774M)"),
        new ModelPreset("gpt2-xl", new GptConfig(V, 1024, 48, 1600, 25, 0.1), "GPT-2 XL (1.5B)"),
        new ModelPreset("gpt-1b", new GptConfig(V, 1024, 20, 2048, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-2b", new GptConfig(V, 1024, 40, 2048, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-4b", new GptConfig(V, 1024, 64, 2304, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-6b", new GptConfig(V, 1024, 53, 3072, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-8b", new GptConfig(V, 1024, 72, 3072, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-10b", new GptConfig(V, 1024, 50, 4096, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-12b", new GptConfig(V, 1024, 60, 4096, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-16b", new GptConfig(V, 1024, 78, 4096, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-20b", new GptConfig(V, 1024, 25, 8192, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt-68b", new GptConfig(V, 1024, 66, 9216, 16), "PatrickStar benchmark size"),
        new ModelPreset("gpt3-175b", new GptConfig(V, 2048, 96, 12288, 96), "GPT-3 175B"),
    };

    public static ModelPreset Get(string name)
    {
        var found = Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
        if (found is not null) return found;
        throw new ArgumentException($"model preset '{name}' is not known. Known presets: {string.Join(", ", Presets.Select(p => p.Name))} " +
                                    "(see `pstar models`), or give the sizes (n_layer, n_embd, n_head, n_positions, vocab_size).");
    }

    /// <summary>A preset with individual sizes overridden; every size must come from somewhere.</summary>
    public static GptConfig Resolve(string? preset, int? vocab, int? context, int? layers, int? hidden, int? heads, double? dropout)
    {
        GptConfig? basis = preset is null ? null : Get(preset).Config;
        var missing = new List<string>();
        int Pick(int? given, int? fromPreset, string key)
        {
            if (given is int g) return g;
            if (fromPreset is int p) return p;
            missing.Add(key);
            return 0;
        }
        var config = new GptConfig(
            Pick(vocab, basis?.VocabSize ?? GptConfig.Gpt2VocabSize, "vocab_size"),
            Pick(context, basis?.ContextLength, "n_positions"),
            Pick(layers, basis?.Layers, "n_layer"),
            Pick(hidden, basis?.Hidden, "n_embd"),
            Pick(heads, basis?.Heads, "n_head"),
            dropout ?? basis?.Dropout ?? 0.0);
        if (missing.Count > 0)
            throw new ArgumentException($"no model preset was given and these sizes are missing: {string.Join(", ", missing)}. " +
                                        "Give a preset (--model gpt2-mini) or every size.");
        config.Validate();
        return config;
    }
}
