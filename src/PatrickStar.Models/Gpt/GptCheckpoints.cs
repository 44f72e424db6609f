using PatrickStar.Checkpoints;
using static TorchSharp.torch;

namespace PatrickStar.Models.Gpt;

/// <summary>GPT models from training checkpoints (the manifest contract of <see cref="CheckpointParameters"/>).</summary>
public static class GptCheckpoints
{
    public static GptConfig ConfigOf(CheckpointParameters checkpoint)
    {
        var m = checkpoint.Model;
        var config = new GptConfig(m.VocabSize, m.ContextLength, m.Layers, m.Hidden, m.Heads);
        try
        {
            config.Validate();
        }
        catch (ArgumentException e)
        {
            throw new ModelFileException($"checkpoint '{checkpoint.Directory}': the manifest's model sizes do not make a model: {e.Message}", e);
        }
        return config;
    }

    /// <summary>A GptModel (fp32, CPU) holding a checkpoint's master weights.</summary>
    public static GptModel LoadModel(string checkpointPath)
    {
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        var model = new GptModel(ConfigOf(checkpoint));
        try
        {
            HuggingFaceGpt2.Import(model, checkpoint);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Exports a checkpoint's master weights as an HF GPT-2 safetensors file (plus config.json),
    /// streaming one tensor at a time. Returns the checkpoint directory used (the latest one under a parent).
    /// </summary>
    public static string Export(string checkpointPath, string outPath, ScalarType dtype)
    {
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        HuggingFaceGpt2.Export(ConfigOf(checkpoint), checkpoint.Sources(), outPath, dtype);
        return checkpoint.Directory;
    }

    /// <summary>Exports a checkpoint's master weights as an HF folder (sharded at <paramref name="maxShardBytes"/>); returns the checkpoint directory used.</summary>
    public static string ExportFolder(string checkpointPath, string dir, ScalarType dtype, long maxShardBytes)
    {
        using var checkpoint = CheckpointParameters.Open(checkpointPath);
        HfFolder.Write(Gpt2HfFamily.Instance, ConfigOf(checkpoint), checkpoint.Sources(), dir, dtype, maxShardBytes);
        return checkpoint.Directory;
    }
}
