using PatrickStar.Chunks;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Chunks;

/// <summary>A parameter's gradient over a step: when it may take the parameter's slot, and what backward must deliver.</summary>
public sealed class ParameterGradientTests
{
    [Fact]
    public void AUseThatReadsTheWeightOnceWritesItsGradientOverTheSlot()
    {
        using var gradient = new ParameterGradient();
        using var slot = ones(3);
        using var g = tensor(new float[] { 1, 2, 3 });
        gradient.CountForwardUse(readsValue: true);
        gradient.BeginBackward();

        Assert.False(gradient.Arrive(backwardReadsValue: true));
        gradient.IntoSlot(slot, g);

        Assert.Equal(SlotContent.Gradient, gradient.Content);
        Assert.True(gradient.AllArrived);
        Assert.True(slot.Same(g));
        gradient.EndBackward("w");
        gradient.Clear();
        Assert.Equal(SlotContent.Weight, gradient.Content);
    }

    [Fact]
    public void AWeightReadByALaterBackwardKeepsItsContributionsAsideUntilTheLastRead()
    {
        using var gradient = new ParameterGradient();
        using var slot = ones(2);
        using var first = tensor(new float[] { 1, 2 });
        using var second = tensor(new float[] { 10, 20 });
        gradient.CountForwardUse(readsValue: true);
        gradient.CountForwardUse(readsValue: true);
        gradient.BeginBackward();

        Assert.True(gradient.Arrive(backwardReadsValue: true)); // the other use's backward still reads the weight
        gradient.HoldAside(first);
        Assert.Equal(SlotContent.WeightWithPendingGradient, gradient.Content);
        using (var weight = ones(2)) Assert.True(slot.Same(weight));
        Assert.False(gradient.AllArrived);

        Assert.False(gradient.Arrive(backwardReadsValue: true));
        gradient.IntoSlot(slot, second);
        Assert.Equal(SlotContent.Gradient, gradient.Content);
        using (var sum = tensor(new float[] { 11, 22 })) Assert.True(slot.Same(sum));
        gradient.EndBackward("w");
    }

    [Fact]
    public void BackwardThatDeliversSomeButNotAllContributionsIsRefused()
    {
        using var gradient = new ParameterGradient();
        gradient.CountForwardUse(readsValue: false);
        gradient.CountForwardUse(readsValue: false);
        gradient.BeginBackward();
        gradient.Arrive(backwardReadsValue: false);

        var e = Assert.Throws<InvalidOperationException>(() => gradient.EndBackward("wte.weight"));
        Assert.Equal("parameter wte.weight received 1 of its gradient contributions.", e.Message);

        // A parameter to which no gradient flowed at all receives none, which is fine.
        using var unused = new ParameterGradient();
        unused.CountForwardUse(readsValue: true);
        unused.BeginBackward();
        unused.EndBackward("lm_head.bias");
        Assert.Equal(SlotContent.Weight, unused.Content);
    }
}
