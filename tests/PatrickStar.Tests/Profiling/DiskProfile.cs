using PatrickStar.Chunks;
using PatrickStar.Memory;
using PatrickStar.Profiling;

namespace PatrickStar.Tests.Profiling;

/// <summary>
/// A hand-made profile of a run with a disk tier: 2 parameter chunks and 2 master chunks of 1 MiB. Both masters are
/// allocated on the host, master 1 is evicted to disk before moment 1 and read back before moment 2 (the optimizer step);
/// parameter chunk 0 moves to the device before moment 0. Two iterations of disk traffic are recorded.
/// </summary>
public static class DiskProfile
{
    public const long ChunkBytes = 1L << 20;
    public const long DiskBudget = 8L << 20;

    public static Profile Build() => new()
    {
        Run = new ProfileRun("toy with disk", "chunked", 4L << 20, 2L << 20, ChunkBytes / 4, 2,
            new KindBytes(ChunkBytes, ChunkBytes, 0, 0, 0), DiskBudget),
        ChunkEvents =
        {
            new(1, 0, -1, ChunkEventType.Allocate, ChunkKind.Param, 0, null, Tier.Host, ChunkBytes),
            new(2, 0, -1, ChunkEventType.Allocate, ChunkKind.Param, 1, null, Tier.Host, ChunkBytes),
            new(3, 0, -1, ChunkEventType.Allocate, ChunkKind.Master, 0, null, Tier.Host, ChunkBytes),
            new(4, 0, -1, ChunkEventType.Allocate, ChunkKind.Master, 1, null, Tier.Host, ChunkBytes),
            new(5, 0, -1, ChunkEventType.Move, ChunkKind.Param, 0, Tier.Host, Tier.Device, ChunkBytes),
            new(15, 0, 0, ChunkEventType.Evict, ChunkKind.Master, 1, Tier.Host, Tier.Disk, ChunkBytes),
            new(25, 0, 1, ChunkEventType.Move, ChunkKind.Master, 1, Tier.Disk, Tier.Host, ChunkBytes),
        },
        Moments =
        {
            new(0, 0, MomentKind.PreForward, "wte", ProfileStage.Forward, 10, new KindBytes { Param = ChunkBytes }, 0, default, 0, null),
            new(0, 1, MomentKind.PreBackward, "wte", ProfileStage.Backward, 20, new KindBytes { Param = ChunkBytes }, 0, default, 0, null),
            new(0, 2, MomentKind.OptimizerStep, "optimizer", ProfileStage.Optimizer, 30, default, 0, default, 0, null),
        },
        Io =
        {
            new(0, ChunkBytes, ChunkBytes, 0.25, 0.5, 0.15, true),
            new(1, 2 * ChunkBytes, 0, 0.5, 0, 0.15, true),
        },
    };
}
