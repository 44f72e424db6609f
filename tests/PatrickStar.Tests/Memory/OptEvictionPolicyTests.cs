using PatrickStar.Memory;
using Xunit;

namespace PatrickStar.Tests.Memory;

public class OptEvictionPolicyTests
{
    // Sample trace, M = 6: chunk 0 at {0,5}, 1 at {1,4}, 2 at {2,3}, 3 at {3}, 4 never.
    private static readonly MomentTrace Trace = MomentTraceTests.SampleTrace();

    [Theory]
    // At moment 0: next uses 0->5, 1->1, 2->2, 3->3: chunk 0 is needed last.
    [InlineData(0, new[] { 0, 1, 2, 3 }, 0)]
    // At moment 1: 0->4, 2->1, 3->2.
    [InlineData(1, new[] { 0, 2, 3 }, 0)]
    // At moment 2: 0->3, 1->2, 3->1; chunk 0 wins only by distance, not id.
    [InlineData(2, new[] { 3, 1, 0 }, 0)]
    // At moment 3: 0->2, 1->1, 2->5 (wraps to moment 2 of the next iteration), 3->6 (wraps to 3).
    [InlineData(3, new[] { 0, 1, 2, 3 }, 3)]
    // At moment 4: 0->1, 2->4 (wraps), 3->5 (wraps).
    [InlineData(4, new[] { 0, 2, 3 }, 3)]
    // At moment 5: 1->2, 2->3, 3->4 (all wrap).
    [InlineData(5, new[] { 1, 2, 3 }, 3)]
    // A chunk never accessed beats everything.
    [InlineData(3, new[] { 0, 1, 2, 3, 4 }, 4)]
    public void ChoosesTheChunkWhoseNextUseIsFarthest(int currentMoment, int[] evictable, int expected)
    {
        Assert.Equal(expected, OptEvictionPolicy.ChooseVictim(Trace, currentMoment, evictable));
    }

    [Fact]
    public void TiesGoToTheSmallerChunkId()
    {
        // Chunks 9 and 5 share every access, so they always tie.
        var trace = new MomentTrace();
        trace.BeginMoment(MomentKind.PreForward, "a");
        trace.RecordAccess(9);
        trace.RecordAccess(5);
        trace.BeginMoment(MomentKind.PreForward, "b");
        trace.RecordAccess(1);
        trace.Complete();

        // At moment 0: 9 and 5 are next used 2 moments later (wrapping), chunk 1 after 1.
        Assert.Equal(5, OptEvictionPolicy.ChooseVictim(trace, 0, new[] { 9, 5, 1 }));
        // Two never-used chunks tie at int.MaxValue.
        Assert.Equal(7, OptEvictionPolicy.ChooseVictim(trace, 0, new[] { 9, 8, 7, 5 }));
    }

    [Fact]
    public void NoEvictableChunkMeansNoVictim()
    {
        Assert.Null(OptEvictionPolicy.ChooseVictim(Trace, 2, Array.Empty<int>()));
    }
}
