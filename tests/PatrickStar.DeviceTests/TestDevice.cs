using PatrickStar.Config;
using PatrickStar.Tests.Training;
using PatrickStar.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.DeviceTests;

/// <summary>The device these tests run on: PSTAR_TEST_DEVICE (cpu, cuda, cuda:N), cpu when unset.</summary>
internal static class TestDevice
{
    public const string Variable = "PSTAR_TEST_DEVICE";

    public static string Name => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } name ? name : "cpu";

    /// <summary>The torch device; fails (never skips) when the device asked for is not there, so a GPU run cannot pass on the CPU.</summary>
    public static Device Get() => TorchRuntime.ResolveDevice(Name);

    /// <summary>A GPT whose parameters outweigh its activations (hidden 256, 4 layers, 2 x 16 tokens: 3.2M parameters, 21 chunks of 1 MiB; with less the budget the estimator asks for holds every chunk), on the test device.</summary>
    public static TrainingConfig Gpt(int steps, Precision precision = Precision.Fp32) => new()
    {
        Model = new ModelSection { Preset = null, VocabSize = TrainingHarness.Vocab, ContextLength = 32, Layers = 4, Hidden = 256, Heads = 4, Dropout = 0.0 },
        MicroBatchSize = 2,
        SequenceLength = 16,
        Steps = steps,
        Precision = precision,
        Seed = 7,
        Optimizer = new OptimizerSection { LearningRate = 1e-3, WeightDecay = 0.01 },
        Scheduler = new SchedulerSection { WarmupSteps = 5 },
        Eval = new EvalSection { Interval = 0 },
        Device = Name,
    };

    /// <summary>Elements per chunk: the largest tensor (mlp.c_fc.weight, hidden x 4 hidden), the finest layout.</summary>
    public const long ChunkElements = 4L * 256 * 256;

    /// <summary>The chunk engine under <paramref name="deviceMemory"/>, copying between the tiers even on a CPU device.</summary>
    public static TrainingConfig Chunked(TrainingConfig c, long deviceMemory)
    {
        c.Engine = "chunked";
        c.Chunks = new ChunkSection
        {
            ChunkSize = ChunkElements,
            DeviceMemory = deviceMemory,
            HostMemory = 1L << 30,
            WarmupDeviceRatio = 0.05, // small enough that the warm-up iteration evicts too
            CopyWithinOneMemory = true, // the copy path a GPU takes, also on a CPU device
        };
        return c;
    }
}
