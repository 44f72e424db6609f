using PatrickStar.Memory;
using Xunit;

namespace PatrickStar.Tests.Memory;

public class DeviceBudgetPlanTests
{
    [Fact]
    public void AllowanceIsBudgetMinusReservedNonModelMinusCommunication()
    {
        // Non-model per moment 10, 50, 20, 0, 30, 70 -> around: 50, 50, 20, 30, 70, 70.
        var plan = new DeviceBudgetPlan(1000, MomentTraceTests.SampleTrace(), communicationBytes: 100);

        Assert.Equal(850, plan.ChunkBytesAllowedAt(0));
        Assert.Equal(880, plan.ChunkBytesAllowedAt(2));
        Assert.Equal(870, plan.ChunkBytesAllowedAt(3));
        Assert.Equal(830, plan.ChunkBytesAllowedAt(5)); // wraps to moment 0 but moment 5 is larger
        Assert.Equal(830, plan.MinimumChunkBytesAllowed);
    }

    [Fact]
    public void AllowanceNeverGoesBelowZero()
    {
        var plan = new DeviceBudgetPlan(100, MomentTraceTests.SampleTrace(), communicationBytes: 40);

        Assert.Equal(40, plan.ChunkBytesAllowedAt(2)); // 100 - 20 - 40
        Assert.Equal(10, plan.ChunkBytesAllowedAt(0)); // 100 - 50 - 40
        Assert.Equal(0, plan.ChunkBytesAllowedAt(4)); // 100 - 70 - 40 < 0
        Assert.Equal(0, plan.MinimumChunkBytesAllowed);
    }

    [Fact]
    public void CommunicationBytesDefaultToNone()
    {
        var plan = new DeviceBudgetPlan(1000, MomentTraceTests.SampleTrace());
        Assert.Equal(980, plan.ChunkBytesAllowedAt(2));
    }

    [Fact]
    public void RejectsNegativeInputs()
    {
        var trace = MomentTraceTests.SampleTrace();
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceBudgetPlan(-1, trace));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceBudgetPlan(1, trace, -1));
        Assert.Throws<ArgumentNullException>(() => new DeviceBudgetPlan(1, null!));
    }
}
