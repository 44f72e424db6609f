using System.Text.Json;
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

    // 29.7M parameters (119 MB in fp32), the embedding a quarter of the model; stored in bf16 so that every tensor is converted.
    private static readonly GptConfig Sizes = new(GptConfig.Gpt2VocabSize, 64, 6, 384, 6);

    /// <summary>What the run may hold beyond its chunks and the runtime: the training step (at batch 1 x 16 tokens), the
    /// tokenizer and data, pools and allocator slack. Well below the fp32 model (119 MB) the whole-model build adds.</summary>
    private const long Allowance = 64L << 20;

    /// <summary>
    /// A child `pstar train --init-from` (one step) peaks at most at the runtime's own resident memory + the chunks' bytes
    /// (16 B per chunk element in fp32: parameters, master, momentum, variance) + <see cref="Allowance"/>. Importing into a
    /// whole fp32 model first, as the run did before the streamed build, peaked above that bound.
    /// </summary>
    [Fact]
    public void InitFromPeakResidentMemoryIsTheChunksPlusASmallAllowance()
    {
        using var dir = new TempDir();
        string file = Path.Combine(dir.Path, "model", "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        // Written one tensor at a time: the test process never holds the model either.
        manual_seed(1);
        HuggingFaceGpt2.Export(Sizes, HuggingFaceGpt2.ParameterShapes(Sizes).Select(s =>
            new TensorSource(s.Name, ScalarType.Float32, s.Shape, () => randn(s.Shape).mul_(0.02))), file, ScalarType.BFloat16);
        string data = dir.File("story.txt", string.Concat(Enumerable.Range(0, 200).Select(i => $"Line {i}: the cat sat on the mat.\n")));
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");

        var (exit, text) = DefaultRunMemoryTests.RunTrain("--init-from", file, "--data", data, "--engine", "chunked", "--device", "cpu",
            "--precision", "fp32", "--seq", "16", "--batch", "1", "--steps", "1", "--eval-interval", "0", "--device-memory", "1GiB",
            "--host-memory", "1GiB", "--metrics", metrics, "--plain-output");
        Assert.True(exit == 0, $"pstar train exited with {exit}:\n{text}");
        using var last = JsonDocument.Parse(File.ReadLines(metrics).Last());
        long peak = last.RootElement.GetProperty("peak_rss_bytes").GetInt64();
        long runtime = last.RootElement.GetProperty("runtime_baseline_rss_bytes").GetInt64();
        long chunkBytes = last.RootElement.GetProperty("chunks").GetInt64() * last.RootElement.GetProperty("chunk_elements").GetInt64() * 16;
        long modelFp32 = Sizes.ParameterCount * 4;

        long bound = runtime + chunkBytes + Allowance;
        string figures = $"peak RSS {Bytes.Format(peak)}; bound {Bytes.Format(runtime)} runtime + {Bytes.Format(chunkBytes)} chunks + " +
                         $"{Bytes.Format(Allowance)} allowance = {Bytes.Format(bound)}; the fp32 model is {Bytes.Format(modelFp32)}";
        output.WriteLine(figures);
        Assert.True(peak <= bound, figures);
    }
}
