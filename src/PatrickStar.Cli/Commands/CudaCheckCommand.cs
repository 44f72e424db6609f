using System.CommandLine;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Runtime;
using PatrickStar.Runtime.Cuda;
using TorchSharp;

namespace PatrickStar.Cli.Commands;

/// <summary>`pstar cuda-check`: loads libcudart and checks the side-stream read-ahead copy on a GPU (<see cref="CudaCopyCheck"/>).</summary>
public static class CudaCheckCommand
{
    public static Command Build()
    {
        var device = new Option<string>("--device") { Description = "The CUDA device (default cuda:0).", DefaultValueFactory = _ => "cuda:0" };
        var size = new Option<string>("--size") { Description = "Bytes copied (default 256MiB).", DefaultValueFactory = _ => "256MiB" };
        var command = new Command("cuda-check", "Check the CUDA read-ahead: loads libcudart, copies host memory (pinned, then pageable) to the device " +
                                                "on a side stream and reads it back on the compute stream; exit code 0 when the values arrive." +
                                                Examples.Format("pstar cuda-check", "pstar cuda-check --device cuda:1 --size 1GiB"));
        command.Options.Add(device);
        command.Options.Add(size);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            long bytes = ByteSize.Parse(r.GetValue(size)!, "--size");
            TorchRuntime.EnsureLoaded();
            var runtime = CudaRuntimeLibrary.TryLoad(out string reason) ?? throw new ConfigException($"{reason}; install the CUDA libtorch package (it ships libcudart) or put libcudart on the library path.");
            if (!torch.cuda.is_available()) throw new ConfigException("no CUDA device: torch.cuda.is_available() is false (a CPU libtorch, or no GPU).");
            var target = new torch.Device(r.GetValue(device)!);
            if (target.type != DeviceType.CUDA) throw new ArgumentException($"--device {r.GetValue(device)} is not a CUDA device; give cuda or cuda:N.");
            Console.WriteLine($"libcudart: {runtime.Path}");
            bool ok = true;
            foreach (bool pinned in new[] { true, false })
            {
                var result = CudaCopyCheck.Run(runtime, target, bytes, pinned);
                Console.WriteLine(result);
                ok &= result.Equal;
            }
            return ok ? 0 : 1;
        }));
        return command;
    }
}
