using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Runtime.Cuda;
using PatrickStar.Tests.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Engine;

/// <summary>Caching-allocator readings scripted by a test; counts the calls.</summary>
internal sealed class FakeAllocatorStatistics : ICudaAllocatorStatistics
{
    public bool Available { get; init; } = true;
    public Func<long> Allocated { get; set; } = () => 0;
    public Func<long> Peak { get; set; } = () => 0;
    public long Reserved { get; set; }
    public (long Free, long Total) Info { get; set; }
    public int Readings { get; private set; }
    public int PeakResets { get; private set; }
    public List<int> DevicesAsked { get; } = new();

    private T Read<T>(int device, Func<T> value)
    {
        Readings++;
        DevicesAsked.Add(device);
        return value();
    }

    public long AllocatedBytes(int device) => Read(device, Allocated);
    public long PeakAllocatedBytes(int device) => Read(device, Peak);
    public void ResetPeak(int device) => PeakResets++;
    public long ReservedBytes(int device) => Read(device, () => Reserved);
    public (long Free, long Total) MemoryInfo(int device) => Read(device, () => Info);
}

/// <summary>
/// The non-model tracer on a CUDA device reads the caching allocator (through a fake here, on a CPU engine): the warm-up
/// trace and the per-moment device allowances after it follow the readings exactly; without statistics it warns once
/// and sees nothing, as before.
/// </summary>
public class CudaNonModelTracerTests
{
    private static readonly Device Gpu = new(DeviceType.CUDA, 0);
    private const long Budget = 1L << 30;
    private const long Baseline = 7_000_000; // allocated on the device before training (not non-model data)

    public CudaNonModelTracerTests() => TorchRuntime.EnsureLoaded();

    private static TrainingConfig Config(Func<Device, INonModelMemoryReader> reader)
    {
        var c = TrainingHarness.Config(steps: 3);
        c.Engine = "chunked";
        c.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = Budget, HostMemory = 1L << 30, NonModelReader = reader, Prefetch = false };
        return c;
    }

    /// <summary>Non-model bytes of the k-th peak reading (k from 0): distinct, so that each moment's figure is recognisable.</summary>
    private static long Scripted(int k) => (k % 5 + 1) * 3_000_000L + k * 1000L;

    [Fact]
    public void TheTraceAndThePlacementFollowTheAllocatorsReadings()
    {
        ChunkedEngine? engine = null;
        int peaks = 0;
        // The allocator holds the device tier's buffers, the baseline and, at each moment's peak, the scripted non-model bytes.
        var fake = new FakeAllocatorStatistics();
        fake.Allocated = () => (engine?.DeviceTier.UsedBytes ?? 0) + Baseline;
        fake.Peak = () => (engine?.DeviceTier.UsedBytes ?? 0) + Baseline + Scripted(peaks++);
        using var run = GptRun.Create(Config(_ => new CudaAllocatorReader(fake, 0)), TrainingHarness.CyclicData());
        engine = (ChunkedEngine)run.Engine;
        var recorder = new ProfileRecorder();
        engine.AttachProfiler(recorder, "tiny GPT");
        run.Trainer.Run();

        // Reading k is taken as moment k begins and closes moment k - 1 (the first one opens the warm-up); the last closes it.
        var trace = engine.Trace;
        Assert.Equal(trace.MomentCount + 1, peaks);
        for (int m = 0; m < trace.MomentCount; m++) Assert.Equal(Scripted(m + 1), trace.NonModelAt(m));
        Assert.Equal(peaks + 1, fake.PeakResets); // the warm-up's start, then after every peak read

        // After the warm-up each moment may hold the budget minus the larger of its own and the next moment's non-model peak.
        var later = recorder.ToProfile().Moments.Where(m => m.Iteration > 0).ToList();
        Assert.NotEmpty(later);
        foreach (var m in later)
        {
            long expected = Budget - Math.Max(Scripted(m.Index + 1), Scripted((m.Index + 1) % trace.MomentCount + 1));
            Assert.Equal(expected, m.DeviceChunkAllowanceBytes);
            Assert.Equal(0, m.DeviceNonModelBytes); // later moments read the allocator now: the baseline and the chunks only
        }
    }

    [Fact]
    public void WithoutAllocatorStatisticsTheTracerWarnsOnceAndSeesNothing()
    {
        var fake = new FakeAllocatorStatistics { Available = false, Allocated = () => 1L << 40, Peak = () => 1L << 40 };
        var warnings = new List<string>();
        using var run = GptRun.Create(Config(d => NonModelMemory.For(Gpu, () => fake, warnings.Add)), TrainingHarness.CyclicData());
        run.Trainer.Run();
        var engine = (ChunkedEngine)run.Engine;

        var warning = Assert.Single(warnings);
        Assert.StartsWith("non-model memory on cuda:0 is not measured: the CUDA allocator statistics are not available", warning);
        Assert.All(Enumerable.Range(0, engine.Trace.MomentCount), m => Assert.Equal(0, engine.Trace.NonModelAt(m)));
        Assert.Equal(0, engine.PeakNonModelObserved);
        Assert.Equal(0, fake.Readings);
    }

    [Fact]
    public void TheReadingIsChosenByTheDevice()
    {
        var fake = new FakeAllocatorStatistics();
        var warnings = new List<string>();
        using (var cpu = NonModelMemory.For(CPU, () => throw new InvalidOperationException("not asked on a CPU"), warnings.Add))
            Assert.IsType<HostAllocatorReader>(cpu);
        using (var gpu = NonModelMemory.For(new Device(DeviceType.CUDA, 2), () => fake, warnings.Add))
        {
            Assert.IsType<CudaAllocatorReader>(gpu);
            gpu.Current();
        }
        Assert.Equal(new[] { 2 }, fake.DevicesAsked);
        Assert.Empty(warnings);
    }

    [Fact]
    public void AnUnsetCudaBudgetIsWhatTheDeviceCanStillGive()
    {
        var config = Config(_ => new NoMemoryReading("test"));
        config.Chunks.DeviceMemory = null;
        config.Chunks.HostMemory = 1L << 30;
        var fake = new FakeAllocatorStatistics { Allocated = () => 1_000, Reserved = 5_000, Info = (Free: 80_000_000, Total: 100_000_000) };
        var options = ChunkEngineOptions.From(config, new Device(DeviceType.CUDA, 1), () => fake);
        Assert.Equal(80_000_000 + 4_000, options.DeviceMemory); // free on the device + cached by the allocator and unused
        Assert.All(fake.DevicesAsked, d => Assert.Equal(1, d));

        var none = new FakeAllocatorStatistics { Available = false };
        var e = Assert.Throws<ArgumentException>(() => ChunkEngineOptions.From(config, Gpu, () => none));
        Assert.StartsWith("device_memory must be set for cuda:0", e.Message);
    }
}

/// <summary>Hybrid Adam reads device-resident gradients in place for device-resident state; only host state takes them to the host.</summary>
public class OptimizerGradientPlacementTests
{
    [Fact]
    public void GradientsCrossToTheHostOnlyForStateOnTheHost()
    {
        var gpu0 = new Device(DeviceType.CUDA, 0);
        Assert.True(OptimizerGradients.ReadInPlace(gpu0, new Device(DeviceType.CUDA, 0)));
        Assert.True(OptimizerGradients.ReadInPlace(CPU, CPU));
        Assert.False(OptimizerGradients.ReadInPlace(gpu0, CPU));
        Assert.False(OptimizerGradients.ReadInPlace(CPU, gpu0));
        Assert.False(OptimizerGradients.ReadInPlace(gpu0, new Device(DeviceType.CUDA, 1)));
    }
}
