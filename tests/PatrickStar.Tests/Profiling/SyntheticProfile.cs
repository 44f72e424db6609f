using PatrickStar.Chunks;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Profiling;

namespace PatrickStar.Tests.Profiling;

/// <summary>
/// A profile shaped like a small chunk-engine run: a 6-layer GPT in 8 parameter chunks of 16 MiB,
/// master and Adam chunks on the host, a device budget too small for all parameter chunks, so
/// chunks are evicted and moved back at moments (LRU here; the engine uses OPT). Times are made up
/// but plausible (forward < backward < optimizer per moment).
/// </summary>
public static class SyntheticProfile
{
    public const int Chunks = 8;
    public const long ChunkElements = 4L << 20;
    public const long ChunkBytes = ChunkElements * 4;
    public const long DeviceBudget = 150L << 20;

    public static Profile Build(int iterations = 4, bool withValidation = true)
    {
        var moments = new List<ProfileMoment>();
        var events = new List<ProfileChunkEvent>();
        var phases = new List<ProfilePhase>();
        var steps = new List<ProfileStep>();
        double t = 0;
        var onDevice = new List<int>(); // least recently used first

        var modules = new List<(string Name, int Chunk)> { ("wte", 0) };
        for (int l = 0; l < 6; l++) modules.Add(($"h.{l}", 1 + l));
        modules.Add(("ln_f", 7));

        foreach (var kind in new[] { ChunkKind.Param, ChunkKind.Master, ChunkKind.Momentum, ChunkKind.Variance })
            for (int c = 0; c < Chunks; c++)
                events.Add(new ProfileChunkEvent(t += 0.5, 0, -1, ChunkEventType.Allocate, kind, c, null, Tier.Host, ChunkBytes));

        for (int it = 0; it < iterations; it++)
        {
            int index = 0;
            long nonModel = 6L << 20;
            void Moment(MomentKind kind, string module, ProfileStage stage, int? chunk, double duration)
            {
                long allowance = DeviceBudget - nonModel - (8L << 20);
                // Make room first (evicting the least recently used other chunk), then bring in the chunk this moment needs.
                int needed = chunk is int c && !onDevice.Contains(c) ? 1 : 0;
                while ((onDevice.Count + needed) * ChunkBytes > allowance && onDevice.Count > 0)
                {
                    int victim = onDevice[0] == chunk && onDevice.Count > 1 ? onDevice[1] : onDevice[0];
                    if (victim == chunk) break;
                    onDevice.Remove(victim);
                    events.Add(new ProfileChunkEvent(t += 0.3, it, index, ChunkEventType.Evict, ChunkKind.Param, victim, Tier.Device, Tier.Host, ChunkBytes));
                }
                if (chunk is int wanted)
                {
                    if (needed == 1)
                        events.Add(new ProfileChunkEvent(t += 0.4, it, index, ChunkEventType.Move, ChunkKind.Param, wanted, Tier.Host, Tier.Device, ChunkBytes));
                    onDevice.Remove(wanted);
                    onDevice.Add(wanted);
                }
                var device = new KindBytes { Param = onDevice.Count * ChunkBytes };
                var host = new KindBytes(
                    (Chunks - onDevice.Count) * ChunkBytes, Chunks * ChunkBytes, Chunks * ChunkBytes, Chunks * ChunkBytes, 0);
                moments.Add(new ProfileMoment(it, index++, kind, module, stage, t, device, nonModel, host, 40L << 20,
                    it == 0 ? null : allowance));
                t += duration;
            }

            double start = t;
            foreach (var (name, chunk) in modules)
            {
                Moment(MomentKind.PreForward, name, ProfileStage.Forward, chunk, 35);
                nonModel += 5L << 20; // activations pile up during the forward pass
            }
            phases.Add(new ProfilePhase(it, ProfileStage.Forward, start, t));
            start = t;
            for (int m = modules.Count - 1; m >= 0; m--)
            {
                Moment(MomentKind.PreBackward, modules[m].Name, ProfileStage.Backward, modules[m].Chunk, 70);
                nonModel -= 5L << 20; // and are freed as the backward pass goes
            }
            phases.Add(new ProfilePhase(it, ProfileStage.Backward, start, t));
            start = t;
            Moment(MomentKind.OptimizerStep, "optimizer", ProfileStage.Optimizer, null, 250);
            phases.Add(new ProfilePhase(it, ProfileStage.Optimizer, start, t));
            double? val = withValidation && it % 2 == 1 ? 10.9 - 0.8 * it : null;
            steps.Add(new ProfileStep(it + 1, 10.8 - 0.9 * it, val, t - phases[^3].StartMs, 4096));
            t += 20; // data loading between iterations
        }
        foreach (int c in onDevice)
            events.Add(new ProfileChunkEvent(t += 1, iterations - 1, moments[^1].Index, ChunkEventType.Release, ChunkKind.Param, c, Tier.Device, null, ChunkBytes));

        return new Profile
        {
            Run = new ProfileRun("gpt2-mini: 6 layers, hidden 384, 30.0M parameters", "chunked", DeviceBudget, 4L << 30,
                ChunkElements, Chunks, new KindBytes(ChunkBytes, ChunkBytes, ChunkBytes, ChunkBytes, 0)),
            Moments = moments,
            ChunkEvents = events,
            Phases = phases,
            Steps = steps,
        };
    }
}
