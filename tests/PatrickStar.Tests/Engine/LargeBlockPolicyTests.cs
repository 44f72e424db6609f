using PatrickStar.Engine;
using Xunit;

namespace PatrickStar.Tests.Engine;

public class LargeBlockPolicyTests
{
    [Theory]
    [InlineData(null, true)] // always on
    [InlineData("1", true)]
    [InlineData("0", false)] // the override that keeps them in the heap
    public void ReturnsLargeBlocksUnlessTurnedOff(string? setting, bool expected) =>
        Assert.Equal(expected, LargeBlockPolicy.ShouldReturn(setting));
}
