namespace PatrickStar.Training;

/// <summary>A layer that writes its weight's gradient ahead into a <see cref="HeadGradientBuffer"/> it keeps (the blocked LM head).</summary>
public interface IHeadGradientOwner
{
    HeadGradientBuffer WeightGradient { get; }
}
