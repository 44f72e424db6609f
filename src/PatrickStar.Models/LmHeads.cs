using PatrickStar.Hooks;
using PatrickStar.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models;

/// <summary>
/// An LM head, logits = h·Wᵀ with W [vocab, h]. Called on hidden states it gives the logits (evaluation by logits,
/// generation); <see cref="Loss"/> gives the mean cross-entropy instead, in row blocks that never hold the batch's logits
/// (<see cref="BlockedHeadLoss"/>). Both go through <c>.call</c>, so the chunk engine's hooks fetch the weight either way.
/// </summary>
public abstract class LmHead : Module<Tensor, Tensor>, INamedLayer, IWholeWeightGradient, IHeadGradientOwner
{
    private Tensor? targets; // set only while Loss runs: a Module<Tensor, Tensor> takes one input
    private readonly HeadGradientBuffer weightGradient = new(); // d/dW, kept from step to step

    protected LmHead(string name) : base(name) { }

    HeadGradientBuffer IHeadGradientOwner.WeightGradient => weightGradient;

    public string Path { get; set; } = "lm_head";

    /// <summary>The head's weight [vocab, h] (the token embedding's when tied).</summary>
    protected abstract Parameter HeadWeight { get; }

    /// <summary>Mean next-token cross-entropy of hidden states [B, T, h] against targets [B, T], without the logits.</summary>
    public Tensor Loss(Tensor hidden, Tensor targets)
    {
        this.targets = targets;
        try { return call(hidden); }
        finally { this.targets = null; }
    }

    public override Tensor forward(Tensor hidden) => targets is null
        ? ParameterOps.LinearNoBias(hidden, HeadWeight, Path)
        : BlockedHeadLoss.Mean(hidden, HeadWeight, targets, Path, weightGradient: weightGradient);

    protected override void Dispose(bool disposing)
    {
        if (disposing) weightGradient.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>An LM head with its own weight (LLaMA's untied lm_head.weight, nn.Linear's layout [vocab, h]).</summary>
public sealed class UntiedLmHead : LmHead
{
    private readonly Parameter weight;

    public UntiedLmHead(long hidden, long vocab) : base(nameof(UntiedLmHead))
    {
        weight = new Parameter(PatrickStar.Chunks.ParameterPlaceholders.Empty(vocab, hidden)); // no memory under a streamed build
        RegisterComponents();
    }

    protected override Parameter HeadWeight => weight;
}
