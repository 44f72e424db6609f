using PatrickStar.Engine;
using Xunit;

namespace PatrickStar.Tests.Engine;

public class LargeBlockPolicyTests
{
    private const long GiB = 1L << 30;

    [Theory]
    [InlineData(10 * GiB, 20 * GiB, null, true)]   // half the machine: near its limit
    [InlineData(9 * GiB, 20 * GiB, null, false)]   // below half: speed first
    [InlineData(1 * GiB, 20 * GiB, "1", true)]     // forced on
    [InlineData(15 * GiB, 20 * GiB, "0", false)]   // forced off
    [InlineData(15 * GiB, null, null, false)]      // unknown machine memory: off
    public void ReturnsLargeBlocksOnlyNearTheMachinesLimit(long modelData, long? available, string? setting, bool expected) =>
        Assert.Equal(expected, LargeBlockPolicy.ShouldReturn(modelData, available, setting));
}
