using PatrickStar.Chunks;
using Xunit;
using static PatrickStar.Chunks.TensorState;

namespace PatrickStar.Tests.Chunks;

public sealed class TensorStateTests
{
    private static readonly TensorState[] Order = [Free, Compute, Hold, HoldAfterForward, HoldAfterBackward];

    // Rows: from; columns: to, both in the order of Order. 1 = legal.
    private static readonly int[,] Expected =
    {
        //             Free Comp Hold HAF  HAB
        /* Free    */ { 1,   1,   1,   0,   0 },
        /* Compute */ { 0,   0,   1,   1,   1 },
        /* Hold    */ { 1,   1,   1,   0,   0 },
        /* HAF     */ { 1,   1,   1,   1,   0 },
        /* HAB     */ { 1,   1,   1,   0,   1 },
    };

    [Fact]
    public void TransitionTable_MatchesTheExpectedMatrix()
    {
        Assert.Equal(Enum.GetValues<TensorState>().Length, Order.Length);
        var mismatches = new List<string>();
        for (int f = 0; f < Order.Length; f++)
            for (int t = 0; t < Order.Length; t++)
            {
                bool expected = Expected[f, t] == 1;
                if (TensorTransitions.IsLegal(Order[f], Order[t]) != expected)
                    mismatches.Add($"{Order[f]} -> {Order[t]} should be {(expected ? "legal" : "illegal")}");
                if (TensorTransitions.LegalTargets(Order[f]).Contains(Order[t]) != expected)
                    mismatches.Add($"LegalTargets({Order[f]}) disagrees about {Order[t]}");
            }
        Assert.Empty(mismatches);
    }

    [Fact]
    public void Check_ThrowsExactlyForIllegalTransitions()
    {
        for (int f = 0; f < Order.Length; f++)
            for (int t = 0; t < Order.Length; t++)
            {
                void Act() => TensorTransitions.Check(Order[f], Order[t], "x", 0, "test");
                if (Expected[f, t] == 1)
                    Act();
                else
                    Assert.Throws<IllegalTensorTransitionException>(Act);
            }
    }

    [Fact]
    public void Exception_NamesTensorChunkMomentStatesAndLegalTargets()
    {
        var ex = Assert.Throws<IllegalTensorTransitionException>(() =>
            TensorTransitions.Check(Free, HoldAfterBackward, "h.3.attn.c_attn.weight", 7, "backward of h.3"));

        Assert.IsAssignableFrom<InvalidOperationException>(ex);
        Assert.Contains("'h.3.attn.c_attn.weight'", ex.Message);
        Assert.Contains("chunk 7", ex.Message);
        Assert.Contains("'backward of h.3'", ex.Message);
        Assert.Contains("Free -> HoldAfterBackward", ex.Message);
        Assert.Contains("Free, Compute, Hold.", ex.Message);
        Assert.Equal((Free, HoldAfterBackward, "h.3.attn.c_attn.weight", 7, "backward of h.3"),
            (ex.From, ex.To, ex.Tensor, ex.Chunk, ex.Moment));
    }

    [Fact]
    public void ReentrantCompute_ExplainsTheMissingRelease()
    {
        var ex = Assert.Throws<IllegalTensorTransitionException>(() =>
            TensorTransitions.Check(Compute, Compute, "wte", 0, "forward of wte"));

        Assert.Contains("already in use", ex.Message);
    }
}
