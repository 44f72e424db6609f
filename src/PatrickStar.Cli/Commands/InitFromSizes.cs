using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Models;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;

namespace PatrickStar.Cli.Commands;

/// <summary>The model sizes of `train --init-from FILE`: from config.json beside FILE, else from the flags and FILE's tensors.</summary>
internal static class InitFromSizes
{
    /// <summary>
    /// Sets the sizes <paramref name="c"/> does not give from <paramref name="file"/>; a preset conflicts with the file's
    /// own sizes and is refused (<paramref name="presetSource"/> names where it came from, or is null when none was chosen).
    /// The import later checks every tensor's shape against the model these sizes make.
    /// </summary>
    public static void Apply(TrainingConfig c, string file, string? presetSource)
    {
        // The folder's own tokenizer, named in the config so that the checkpoints record it (export and generate use it).
        if (c.Data.Tokenizer is null && Directory.Exists(file) && PatrickStar.Data.TokenizerFolder.HasTokenizer(file)) c.Data.Tokenizer = Path.GetFullPath(file);
        if (presetSource is not null)
            throw new ConfigException($"{presetSource} and --init-from both choose the model: the weights file '{file}' fixes its sizes, " +
                                      $"so drop {presetSource} (sizes can still be given with --layers/--hidden/--heads/--context).");
        if (HuggingFaceLlamaFolder.IsLlamaSource(file))
        {
            ApplyLlama(c, file);
            return;
        }
        string configPath = HuggingFaceGpt2.ConfigPathBeside(file);
        GptConfig sizes;
        if (Directory.Exists(file)) sizes = HuggingFaceGpt2Folder.ReadConfig(file);
        else if (File.Exists(configPath)) sizes = HuggingFaceGpt2.ReadConfigJson(configPath);
        else
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"the --init-from file '{file}' does not exist.");
            using var reader = SafetensorsReader.Open(file);
            sizes = HuggingFaceGpt2.InferConfig(reader, c.Model.Heads); // asks for --heads: the shapes do not tell it
        }
        c.Model.Preset = null;
        c.Model.VocabSize ??= sizes.VocabSize;
        c.Model.ContextLength ??= sizes.ContextLength;
        c.Model.Layers ??= sizes.Layers;
        c.Model.Hidden ??= sizes.Hidden;
        c.Model.Heads ??= sizes.Heads;
    }

    /// <summary>
    /// A LLaMA folder's (or file's) model: every key of its shape set from its config.json, so that the run's config (and
    /// the checkpoints that record it) describes that model whatever its shape; size flags given still override.
    /// </summary>
    private static void ApplyLlama(TrainingConfig c, string path)
    {
        var weights = HuggingFaceLlamaFolder.ReadConfig(path);
        var m = c.Model;
        var (vocab, context, layers, hidden, heads) = (m.VocabSize, m.ContextLength, m.Layers, m.Hidden, m.Heads);
        m.Preset = null;
        ModelFamilies.Describe(m, weights);
        m.VocabSize = vocab ?? weights.VocabSize;
        m.ContextLength = context ?? weights.ContextLength;
        m.Layers = layers ?? weights.Layers;
        m.Hidden = hidden ?? weights.Hidden;
        m.Heads = heads ?? weights.Heads;
    }
}
