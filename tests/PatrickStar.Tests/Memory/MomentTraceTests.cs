using PatrickStar.Memory;
using Xunit;

namespace PatrickStar.Tests.Memory;

public class MomentTraceTests
{
    /// <summary>
    /// Six moments; chunk 0 at 0 and 5, chunk 1 at 1 and 4, chunk 2 at 2 and 3, chunk 3 at 3 only,
    /// chunk 4 never. Non-model bytes 10, 50, 20, 0, 30, 70.
    /// </summary>
    internal static MomentTrace SampleTrace()
    {
        var trace = new MomentTrace();
        (MomentKind Kind, string Module, int[] Chunks, long NonModel)[] moments =
        {
            (MomentKind.PreForward, "h0", new[] { 0 }, 10),
            (MomentKind.PreForward, "h1", new[] { 1 }, 50),
            (MomentKind.PreForward, "h2", new[] { 2 }, 20),
            (MomentKind.PreBackward, "h2", new[] { 2, 3 }, 0),
            (MomentKind.PreBackward, "h1", new[] { 1 }, 30),
            (MomentKind.OptimizerStep, "adam", new[] { 0 }, 70),
        };
        foreach (var (kind, module, chunks, nonModel) in moments)
        {
            trace.BeginMoment(kind, module);
            foreach (int c in chunks) trace.RecordAccess(c);
            trace.RecordNonModel(nonModel);
        }
        trace.Complete();
        return trace;
    }

    [Fact]
    public void RecordsMomentsAccessesAndTheLargestNonModelFigure()
    {
        var trace = new MomentTrace();
        Assert.Equal(0, trace.BeginMoment(MomentKind.PreForward, "a"));
        trace.RecordAccess(7);
        trace.RecordAccess(7); // twice in one moment counts once
        trace.RecordNonModel(100);
        trace.RecordNonModel(40); // the maximum is kept
        Assert.Equal(1, trace.BeginMoment(MomentKind.PreBackward, "a"));
        trace.RecordAccess(7);
        trace.RecordNonModel(-5); // a racing negative reading means nothing beyond the chunks
        trace.Complete();

        Assert.Equal(2, trace.MomentCount);
        Assert.Equal(new Moment(1, MomentKind.PreBackward, "a"), trace.Moments[1]);
        Assert.Equal(new[] { 0, 1 }, trace.AccessesOf(7));
        Assert.Empty(trace.AccessesOf(8));
        Assert.Equal(100, trace.NonModelAt(0));
        Assert.Equal(0, trace.NonModelAt(1));
        Assert.Equal(100, trace.PeakNonModel);
    }

    [Fact]
    public void RecordingNeedsAMomentAndStopsAtComplete()
    {
        var trace = new MomentTrace();
        Assert.Throws<InvalidOperationException>(() => trace.RecordAccess(0));
        Assert.Throws<InvalidOperationException>(() => trace.RecordNonModel(1));
        Assert.Throws<InvalidOperationException>(() => trace.Complete()); // nothing recorded

        trace.BeginMoment(MomentKind.PreForward, "a");
        Assert.Throws<InvalidOperationException>(() => trace.NextUse(0, 0)); // wrap needs the final count
        trace.Complete();
        Assert.Throws<InvalidOperationException>(() => trace.BeginMoment(MomentKind.PreForward, "b"));
        Assert.Throws<InvalidOperationException>(() => trace.RecordAccess(0));
        Assert.Throws<InvalidOperationException>(() => trace.RecordNonModel(1));
        Assert.Equal(1, trace.MomentCount);
    }

    [Fact]
    public void NextUseLooksStrictlyLaterAndWrapsIntoTheNextIteration()
    {
        var trace = SampleTrace(); // M = 6

        Assert.Equal(5, trace.NextUse(0, 0)); // 0 -> 5
        Assert.Equal(1, trace.NextUse(0, 4));
        Assert.Equal(1, trace.NextUse(0, 5)); // wraps: 6 - 5 + 0
        Assert.Equal(3, trace.NextUse(1, 1)); // 1 -> 4
        Assert.Equal(3, trace.NextUse(1, 4)); // wraps: 6 - 4 + 1
        Assert.Equal(2, trace.NextUse(1, 5)); // wraps: 6 - 5 + 1
        Assert.Equal(6, trace.NextUse(3, 3)); // only at moment 3: a whole iteration away
        Assert.Equal(3, trace.NextUse(3, 0));
        Assert.Equal(int.MaxValue, trace.NextUse(4, 2)); // never accessed
        Assert.Equal(int.MaxValue, trace.NextUse(99, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => trace.NextUse(0, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => trace.NextUse(0, -1));
    }

    [Fact]
    public void PeakNonModelAroundIsTheLargerOfThisAndTheNextMomentAndWraps()
    {
        var trace = SampleTrace(); // 10, 50, 20, 0, 30, 70

        Assert.Equal(50, trace.PeakNonModelAround(0));
        Assert.Equal(50, trace.PeakNonModelAround(1));
        Assert.Equal(20, trace.PeakNonModelAround(2));
        Assert.Equal(30, trace.PeakNonModelAround(3));
        Assert.Equal(70, trace.PeakNonModelAround(4));
        Assert.Equal(70, trace.PeakNonModelAround(5)); // the last moment pairs with moment 0
        Assert.Equal(70, trace.PeakNonModel);
    }

    [Fact]
    public void PeakNonModelAroundTheLastMomentSeesTheFirstOneOfTheNextIteration()
    {
        var trace = new MomentTrace();
        trace.BeginMoment(MomentKind.PreForward, "a");
        trace.RecordNonModel(90);
        trace.BeginMoment(MomentKind.OptimizerStep, "step");
        trace.RecordNonModel(5);
        trace.Complete();

        Assert.Equal(90, trace.PeakNonModelAround(1));
    }

    [Fact]
    public void CheckSameShapeAcceptsTheTracedSequence()
    {
        var trace = SampleTrace();
        foreach (var m in trace.Moments) trace.CheckSameShape(m.Index, m.Kind, m.Module);
        trace.CheckIterationLength(6);
    }

    [Fact]
    public void CheckSameShapeNamesBothTheTracedAndTheActualMoment()
    {
        var trace = SampleTrace();

        var differentModule = Assert.Throws<InvalidOperationException>(
            () => trace.CheckSameShape(1, MomentKind.PreForward, "dropout"));
        Assert.Contains("'h1'", differentModule.Message);
        Assert.Contains("'dropout'", differentModule.Message);

        var differentKind = Assert.Throws<InvalidOperationException>(
            () => trace.CheckSameShape(4, MomentKind.PreForward, "h1"));
        Assert.Contains("PreBackward 'h1'", differentKind.Message);
        Assert.Contains("PreForward 'h1'", differentKind.Message);

        var tooMany = Assert.Throws<InvalidOperationException>(
            () => trace.CheckSameShape(6, MomentKind.PreForward, "extra"));
        Assert.Contains("'extra'", tooMany.Message);
        Assert.Contains("OptimizerStep 'adam'", tooMany.Message);

        var tooFew = Assert.Throws<InvalidOperationException>(() => trace.CheckIterationLength(5));
        Assert.Contains("5", tooFew.Message);
        Assert.Contains("6", tooFew.Message);
    }

    [Fact]
    public void CheckSameShapeNeedsACompleteTrace()
    {
        var trace = new MomentTrace();
        trace.BeginMoment(MomentKind.PreForward, "a");
        Assert.Throws<InvalidOperationException>(() => trace.CheckSameShape(0, MomentKind.PreForward, "a"));
    }
}
