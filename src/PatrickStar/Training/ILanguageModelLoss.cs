using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>
/// A language model that computes its mean next-token loss itself, without materialising the logits of the whole batch
/// (see <see cref="BlockedHeadLoss"/>). Trainers and evaluation use it when the model has it (<see cref="LanguageModelLoss.Of"/>).
/// </summary>
public interface ILanguageModelLoss
{
    /// <summary>Mean cross-entropy (an fp32 scalar) of the next-token predictions for ids [B, T] against targets [B, T].</summary>
    Tensor Loss(Tensor ids, Tensor targets);
}
