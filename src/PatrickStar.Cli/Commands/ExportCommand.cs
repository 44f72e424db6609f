using System.CommandLine;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Runtime;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar export`: a training checkpoint's master weights as a Hugging Face GPT-2 safetensors file plus config.json.</summary>
public static class ExportCommand
{
    public static Command Build()
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint directory (with manifest.json), or a folder of step-NNNNNNNN checkpoints (the latest is used)." };
        var output = new Option<FileInfo>("--out") { Description = "The safetensors file to write; config.json is written beside it.", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "Precision of the exported weights.", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16", "fp16");

        var command = new Command("export", "Export a training checkpoint as Hugging Face GPT-2 weights (model.safetensors + config.json), " +
                                            "loadable by transformers' GPT2LMHeadModel.from_pretrained(folder)." +
                                            Examples.Format("pstar export runs/a --out hf/model.safetensors --dtype bf16"));
        command.Arguments.Add(checkpoint);
        command.Options.Add(output);
        command.Options.Add(dtype);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            var outFile = r.GetValue(output)!;
            OutputPaths.EnsureWritableFile(outFile.FullName, "--out file", viaTempFile: true);
            OutputPaths.EnsureWritableFile(HuggingFaceGpt2.ConfigPathBeside(outFile.FullName), "config.json beside the --out file");
            TorchRuntime.EnsureLoaded();
            var type = SafetensorsDTypes.ParsePrecision(r.GetValue(dtype)!);
            string dir = GptCheckpoints.Export(r.GetValue(checkpoint)!, outFile.FullName, type);
            Console.WriteLine($"Exported {dir} to {outFile.FullName} ({r.GetValue(dtype)}) with {HuggingFaceGpt2.ConfigPathBeside(outFile.FullName)}.");
            return 0;
        }));
        return command;
    }
}
