using System.Diagnostics;
using PatrickStar.Checkpoints;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Memory;

/// <summary>`pstar train --init-from` with the chunk engine never holds the whole fp32 model beside its chunks.</summary>
public class InitFromMemoryTests
{
    private readonly ITestOutputHelper output;

    public InitFromMemoryTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    // 29.97M parameters (114 MiB in fp32), the embedding two thirds of them; stored in bf16 so that every tensor is converted.
    private static readonly GptConfig Sizes = new(GptConfig.Gpt2VocabSize, 64, 6, 384, 6);
    // The same vocabulary (the tokenizer's) and nothing else: 0.4M parameters.
    private static readonly GptConfig Tiny = new(GptConfig.Gpt2VocabSize, 64, 1, 8, 1);

    // One chunk holds every parameter: the chunks' bytes are this many elements x 16 B (fp32 parameters, master, momentum, variance).
    private const long ChunkElements = 30_000_000;

    /// <summary>What the build may hold beyond the chunks: the conversion's staging buffer, the order pass's temporaries (given
    /// back before the chunks are allocated), allocator slack. Well below the fp32 model (114 MiB) a whole-model build adds.</summary>
    private const long Allowance = 48L << 20;

    /// <summary>
    /// The peak RSS of a child `pstar train --init-from` up to the start of its first step (it is killed there, as
    /// PSTAR_FAIL_MODE=kill does, so the peak is the build's) is at most the same run's with a tiny model of the same
    /// vocabulary (the runtime, tokenizer and data) + the chunks' bytes + <see cref="Allowance"/>. Importing into the
    /// whole fp32 model first, as the run did before the streamed build, peaked above that bound.
    /// </summary>
    [Fact]
    public void InitFromBuildPeakResidentMemoryIsTheChunksPlusASmallAllowance()
    {
        using var dir = new TempDir();
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        long baseline = BuildPeak(dir, "tiny", Tiny, data, chunkElements: null);
        long peak = BuildPeak(dir, "model", Sizes, data, ChunkElements);
        long chunkBytes = ChunkElements * 16;

        long bound = baseline + chunkBytes + Allowance;
        string figures = $"build peak RSS {Bytes.Format(peak)}; bound {Bytes.Format(baseline)} (the same run with a {Tiny.ParameterCount:N0}-parameter model) + " +
                         $"{Bytes.Format(chunkBytes)} chunks + {Bytes.Format(Allowance)} allowance = {Bytes.Format(bound)}; the fp32 model is {Bytes.Format(Sizes.ParameterCount * 4)}";
        output.WriteLine(figures);
        Assert.True(peak <= bound, figures);
    }

    /// <summary>Peak RSS (VmHWM, polled) of a child train --init-from of a model of <paramref name="sizes"/> (chunks of
    /// <paramref name="chunkElements"/>, or the engine's choice), killed when its first step starts.</summary>
    private static long BuildPeak(TempDir dir, string name, GptConfig sizes, string data, long? chunkElements)
    {
        string file = Path.Combine(dir.Path, name, "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        // Written one tensor at a time: the test process never holds the model either.
        manual_seed(1);
        HuggingFaceGpt2.Export(sizes, HuggingFaceGpt2.ParameterShapes(sizes).Select(s =>
            new TensorSource(s.Name, ScalarType.Float32, s.Shape, () => randn(s.Shape).mul_(0.02))), file, ScalarType.BFloat16);

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(typeof(PatrickStar.Cli.Program).Assembly.Location);
        foreach (var a in new[] { "train", "--init-from", file, "--data", data, "--engine", "chunked", "--device", "cpu", "--precision", "fp32",
                     "--seq", "16", "--batch", "1", "--steps", "1", "--eval-interval", "0", "--device-memory", "1GiB", "--host-memory", "1GiB",
                     "--plain-output" })
            start.ArgumentList.Add(a);
        if (chunkElements is long size) foreach (var a in new[] { "--chunk-size", size.ToString() }) start.ArgumentList.Add(a);
        start.Environment["TERM"] = "dumb";
        start.Environment["PSTAR_FAIL_RANK"] = "0";
        start.Environment["PSTAR_FAIL_STEP"] = "1";
        start.Environment["PSTAR_FAIL_MODE"] = "kill";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        long peak = 0;
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(180))
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
                    if (line.StartsWith("VmHWM:")) peak = Math.Max(peak, MemoryMeter.ParseKb(line));
            }
            catch (IOException) { } // it exited between the check and the read
            Thread.Sleep(5);
        }
        if (!process.HasExited) process.Kill(entireProcessTree: true);
        process.WaitForExit();
        // Killed (SIGKILL: exit code 128 + 9) at the start of step 1: the build completed.
        Assert.True(process.ExitCode == 137 && stdout.Result.Contains("Training custom GPT"),
            $"the child did not reach step 1 (exit {process.ExitCode}):\n{stdout.Result}{stderr.Result}");
        return peak;
    }
}
