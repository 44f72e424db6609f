using System.CommandLine;
using PatrickStar.Checkpoints;
using PatrickStar.Config;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar export`: a training checkpoint's master weights as a Hugging Face GPT-2 folder, or one safetensors file plus config.json.</summary>
public static class ExportCommand
{
    public static Command Build()
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint directory (with manifest.json), or a folder of step-NNNNNNNN checkpoints (the latest is used)." };
        var output = new Option<FileInfo>("--out")
        {
            Description = "The folder to write (config.json, generation_config.json, model.safetensors or shards with their index, tokenizer files); " +
                          "a path ending in .safetensors writes that one file with config.json beside it.",
            Required = true,
        };
        var maxShard = new Option<string>("--max-shard-size") { Description = "Folder export: largest shard, e.g. 5GB (the default), 500MB, 2GiB.", DefaultValueFactory = _ => HfFolder.DefaultMaxShardSize };
        var tokenizer = new Option<string?>("--tokenizer")
        {
            Description = "Folder export: the tokenizer whose files go in the folder: gpt2, r50k, cl100k, o200k, or a tokenizer folder to copy " +
                          "(default: the one the checkpoint's run used, else gpt2). Its begin/end-of-text ids go in config.json and generation_config.json.",
        };
        var dtype = new Option<string>("--dtype") { Description = "Precision of the exported weights.", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16", "fp16");

        var command = new Command("export", "Export a training checkpoint as Hugging Face weights (model.safetensors + config.json), " +
                                            "loadable by transformers' GPT2LMHeadModel or, for a LLaMA, LlamaForCausalLM .from_pretrained(folder)." +
                                            Examples.Format("pstar export runs/a --out hf/model.safetensors --dtype bf16",
                                                            "pstar export runs/a --out hf/model --max-shard-size 2GB   # a folder: config, shards, index, tokenizer"));
        command.Arguments.Add(checkpoint);
        command.Options.Add(output);
        command.Options.Add(dtype);
        command.Options.Add(maxShard);
        command.Options.Add(tokenizer);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            var outFile = r.GetValue(output)!;
            if (!outFile.FullName.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || Directory.Exists(outFile.FullName))
                return ExportFolder(r.GetValue(checkpoint)!, outFile.FullName, r.GetValue(dtype)!, r.GetValue(maxShard)!, r.GetValue(tokenizer));
            OutputPaths.EnsureWritableFile(outFile.FullName, "--out file", viaTempFile: true);
            OutputPaths.EnsureWritableFile(HuggingFaceGpt2.ConfigPathBeside(outFile.FullName), "config.json beside the --out file");
            TorchRuntime.EnsureLoaded();
            var type = SafetensorsDTypes.ParsePrecision(r.GetValue(dtype)!);
            string dir = PatrickStar.Models.CausalLmCheckpoints.Export(r.GetValue(checkpoint)!, outFile.FullName, type);
            Console.WriteLine($"Exported {dir} to {outFile.FullName} ({r.GetValue(dtype)}) with {HuggingFaceGpt2.ConfigPathBeside(outFile.FullName)}.");
            return 0;
        }));
        return command;
    }

    private static int ExportFolder(string checkpoint, string dir, string dtype, string maxShardSize, string? tokenizerFlag)
    {
        long maxShardBytes = ByteSize.Parse(maxShardSize, "--max-shard-size");
        if (maxShardBytes <= 0) throw new ArgumentException($"--max-shard-size '{maxShardSize}' must be more than 0 bytes; e.g. 5GB.");
        OutputPaths.EnsureWritableDirectory(dir, "--out folder");
        string tokenizer = tokenizerFlag ?? PatrickStar.Models.CausalLmCheckpoints.RecordedTokenizer(checkpoint) ?? PatrickStar.Data.Tokenizers.DefaultName;
        var tokenizerFiles = PatrickStar.Data.Tokenizers.Resolve(tokenizer); // an unknown name (or a recorded folder since removed) fails before any work
        TorchRuntime.EnsureLoaded();
        string source = PatrickStar.Models.CausalLmCheckpoints.ExportFolder(checkpoint, dir, SafetensorsDTypes.ParsePrecision(dtype), maxShardBytes);
        var written = PatrickStar.Data.TokenizerFolder.Write(tokenizer, null, dir);
        var (bos, eos) = PatrickStar.Data.Tokenizers.BeginAndEnd(tokenizerFiles);
        HfSpecialTokens.Set(dir, bos, eos);
        Console.WriteLine($"Exported {source} to the folder {dir} ({dtype}, shards of at most {maxShardSize}); tokenizer files: " +
                          (written.Count > 0 ? $"{string.Join(", ", written)} ({tokenizerFiles.Id})" : $"none ({tokenizerFiles.Id} has no files to write: give the folder a tokenizer of its own)") + ".");
        return 0;
    }
}
