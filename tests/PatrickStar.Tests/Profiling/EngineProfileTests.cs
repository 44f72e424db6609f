using PatrickStar.Chunks;
using PatrickStar.Config;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using PatrickStar.Tests.Training;
using Xunit;
using static PatrickStar.Tests.Cli.CliTests;

namespace PatrickStar.Tests.Profiling;

/// <summary>The profile of a real chunk-engine run: complete, consistent with the engine's own accounting, plottable.</summary>
public class EngineProfileTests
{
    public EngineProfileTests() => TorchRuntime.EnsureLoaded();

    private static TrainingConfig Config(int steps)
    {
        var c = TrainingHarness.Config(steps);
        c.Engine = "chunked";
        // A warm-up allowance of a few chunks: the first iteration evicts, later ones bring chunks back.
        c.Chunks = new ChunkSection { ChunkSize = 4096, DeviceMemory = 1L << 30, HostMemory = 1L << 30, WarmupDeviceRatio = 0.00005 };
        return c;
    }

    [Fact]
    public void TheProfileHasEveryMomentAndAgreesWithTheEngine()
    {
        const int steps = 3;
        using var run = GptRun.Create(Config(steps), TrainingHarness.CyclicData());
        var engine = (ChunkedEngine)run.Engine;
        var recorder = new ProfileRecorder();
        engine.AttachProfiler(recorder, "tiny GPT");
        run.Trainer.StepCompleted += s => recorder.Step(s.Step, s.Loss, null, s.StepSeconds * 1000, 256);
        run.Trainer.Run();
        var profile = recorder.ToProfile();

        // Every moment of every iteration, in the traced order.
        var traced = engine.Trace.Moments;
        Assert.Equal(steps * traced.Count, profile.Moments.Count);
        for (int it = 0; it < steps; it++)
        {
            var moments = profile.Moments.Where(m => m.Iteration == it).OrderBy(m => m.Index).ToList();
            Assert.Equal(traced.Select(m => (m.Kind, m.Module)), moments.Select(m => (m.Kind, m.Module)));
            Assert.True(moments.Zip(moments.Skip(1)).All(p => p.First.TimeMs <= p.Second.TimeMs));
        }

        // Chunk bytes at every moment: every chunk is in exactly one tier, so the two tiers add up to all chunks.
        long allChunks = engine.ChunkBytesIn(Tier.Device).Total + engine.ChunkBytesIn(Tier.Host).Total;
        Assert.Equal(engine.DeviceTier.InUseBytes + engine.HostTier.InUseBytes, allChunks);
        foreach (var m in profile.Moments)
        {
            Assert.Equal(allChunks, m.DeviceChunkBytes.Total + m.HostChunkBytes.Total);
            Assert.True(m.DeviceChunkBytes.Total + m.DeviceNonModelBytes <= run.Config.Chunks.DeviceMemory);
        }

        // Events balance: replaying them from the allocations gives every chunk's tier as the engine has it now;
        // every move leaves the tier the chunk was in for another.
        var where = new Dictionary<(ChunkKind, int), Tier>();
        foreach (var e in profile.ChunkEvents)
        {
            var key = (e.Kind, e.Index);
            switch (e.Type)
            {
                case ChunkEventType.Allocate:
                    Assert.False(where.ContainsKey(key), $"{key} allocated twice");
                    Assert.Null(e.From);
                    where[key] = e.To!.Value;
                    break;
                case ChunkEventType.Move or ChunkEventType.Evict:
                    Assert.Equal(where[key], e.From);
                    Assert.NotEqual(e.From, e.To);
                    where[key] = e.To!.Value;
                    break;
                case ChunkEventType.Release:
                    Assert.Equal(where[key], e.From);
                    where.Remove(key);
                    break;
            }
        }
        var replayedDevice = where.Where(kv => kv.Value == Tier.Device).Sum(kv => profile.Run.BytesPerChunk[kv.Key.Item1]);
        Assert.Equal(engine.ChunkBytesIn(Tier.Device).Total, replayedDevice);
        Assert.Contains(profile.ChunkEvents, e => e.Type == ChunkEventType.Evict);
        Assert.Contains(profile.ChunkEvents, e => e.Type == ChunkEventType.Move && e.To == Tier.Device);

        // Phases: forward, backward, optimizer in each iteration, in order, not overlapping.
        for (int it = 0; it < steps; it++)
        {
            var phases = profile.Phases.Where(p => p.Iteration == it).ToList();
            Assert.Equal([ProfileStage.Forward, ProfileStage.Backward, ProfileStage.Optimizer], phases.Select(p => p.Stage));
            Assert.True(phases.Zip(phases.Skip(1)).All(p => p.First.EndMs <= p.Second.StartMs));
        }
        Assert.Equal(steps, profile.Steps.Count);
    }

    [Fact]
    public void TrainWithProfileThenPlotDrawsTheFigures()
    {
        using var dir = new TempDir();
        string profile = Path.Combine(dir.Path, "profile.json");
        var (code, output, err) = Pstar("train", "--model", "gpt2-tiny", "--steps", "2", "--batch", "2", "--seq", "32", "--eval-interval", "0",
            "--engine", "chunked", "--device-memory", "256MiB", "--host-memory", "1GiB", "--profile", profile, "--plain-output");
        Assert.True(code == 0, err + output);
        Assert.Contains("Profile written to", output);
        var loaded = Profile.Load(profile);
        Assert.Equal(2, loaded.Steps.Count);
        Assert.NotEmpty(loaded.Moments);

        string figures = Path.Combine(dir.Path, "figures");
        (code, output, err) = Pstar("plot", profile, "--out", figures);
        Assert.True(code == 0, err);
        foreach (var name in new[] { "memory.png", "chunks.png", "loss.png" })
            Assert.True(new FileInfo(Path.Combine(figures, name)).Length > 10_000, name);
    }

    [Fact]
    public void ProfileNeedsTheChunkEngine()
    {
        var (code, _, err) = Pstar("train", "--steps", "1", "--profile", "p.json");
        Assert.NotEqual(0, code);
        Assert.Contains("--engine chunked", err);
    }
}
