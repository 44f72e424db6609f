using System.CommandLine;
using PatrickStar.Models;
using PatrickStar.Models.Generation;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;
using TorchSharp;

namespace PatrickStar.Cli.Commands;

/// <summary>The options and loading shared by the commands that run a trained model (eval, generate).</summary>
internal static class ModelFiles
{
    public static Option<FileInfo?> InitFrom() =>
        new("--init-from") { Description = "HF GPT-2 or LLaMA folder (config.json, model.safetensors or shards with the index, tokenizer files), or a safetensors file (sizes from config.json beside it, else inferred from the tensors)." };

    public static Option<string?> Checkpoint() =>
        new("--checkpoint") { Description = "A training checkpoint directory (or a folder of step-NNNNNNNN checkpoints: the latest) instead of --init-from." };

    public static Option<int?> Heads() =>
        new("--heads") { Description = "Attention heads, needed only when no config.json is beside the --init-from file." };

    public static Option<string?> Device() =>
        new("--device") { Description = "auto, cpu, cuda or cuda:N (default auto)." };

    /// <summary>Loads the model from a weights file or a checkpoint and moves it to the device, in eval mode.</summary>
    public static (ICausalLm Model, torch.Device Device, string Source) Load(FileInfo? initFrom, string? checkpoint, int? heads, string? device)
    {
        if ((initFrom is null) == (checkpoint is null))
            throw new ArgumentException("give the model with exactly one of --init-from PATH (an HF folder or safetensors file) or --checkpoint DIR (a training checkpoint).");
        TorchRuntime.EnsureLoaded();
        var dev = TorchRuntime.ResolveDevice(device ?? "auto");
        ICausalLm model = initFrom is not null ? CausalLmCheckpoints.LoadHf(initFrom.FullName, heads) : CausalLmCheckpoints.LoadModel(checkpoint!);
        string source = initFrom?.FullName ?? checkpoint!;
        try
        {
            RefuseNonFinite(model.Network, source);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        if (dev.type != DeviceType.CPU) model.Network.to(dev);
        model.Network.eval();
        return (model, dev, source);
    }

    /// <summary>
    /// The tokenizer for a loaded model: --tokenizer, else the checkpoint's run's, else an --init-from folder's own, else gpt2; refused before any work
    /// when its ids do not fit the model's vocabulary.
    /// </summary>
    public static PatrickStar.Data.ITextTokenizer Tokenizer(string? spec, FileInfo? initFrom, string? checkpoint, ICausalLm model, string source)
    {
        spec ??= checkpoint is null ? null : CausalLmCheckpoints.RecordedTokenizer(checkpoint);
        var tokenizer = PatrickStar.Data.Tokenizers.Resolve(spec, initFrom is not null && Directory.Exists(initFrom.FullName) ? initFrom.FullName : null);
        PatrickStar.Data.Tokenizers.EnsureFitsModel(tokenizer, model.VocabSize, source);
        return tokenizer;
    }

    /// <summary>A model holding NaN or infinity would print nothing or a meaningless loss: refuse it, naming the tensor.</summary>
    private static void RefuseNonFinite(torch.nn.Module<torch.Tensor, torch.Tensor> model, string source)
    {
        foreach (var (name, p) in model.named_parameters())
        {
            using var scope = torch.NewDisposeScope();
            long bad = torch.isfinite(p).logical_not().sum().item<long>();
            if (bad > 0)
                throw new PatrickStar.Checkpoints.ModelFileException($"'{source}' holds {bad:N0} NaN or infinite value(s) in tensor '{name}'; " +
                                                                     "the weights are damaged (a diverged run?): use an earlier checkpoint or re-export.");
        }
    }
}
