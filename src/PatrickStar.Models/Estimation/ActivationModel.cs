using PatrickStar.Config;
using PatrickStar.Models.Gpt;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// Non-model memory of one training iteration of <see cref="GptModel"/>, from the sizes: the whole pass's peak
/// (<see cref="Activations"/>, the plain engine's view) and, for the chunk engine, the peak of each stretch between
/// its moments (<see cref="Phases"/>), which is what its warm-up check adds to the parameter chunks it needs next.
/// </summary>
public static class ActivationModel
{
    /// <summary>Bytes of one activation element: bf16 with fp32 compute keeps its activations in fp32.</summary>
    public static int ActivationBytes(Precision p) => p == Precision.Bf16 ? 2 : 4;

    /// <summary>Bytes of one stored parameter (and of its gradient in the parameter's dtype): bf16 for both bf16 modes.</summary>
    public static int ParameterBytes(Precision p) => p is Precision.Bf16 or Precision.Bf16Fp32 ? 2 : 4;

    /// <summary>
    /// Peak bytes of non-model data in one training forward+backward of <see cref="GptModel"/>. Gradients of the
    /// parameters that live in allocated <c>.grad</c> tensors or chunks are model data and not counted here.
    /// </summary>
    /// <remarks>
    /// Measured behaviour this follows (see <see cref="ActivationMeter"/>): the custom autograd functions of
    /// ParameterOps receive and return gradients as TorchSharp tensors, and those handles (and the handles to
    /// saved inputs) belong to the trainer's per-micro-step dispose scope, so they stay alive until backward has
    /// finished. Memory therefore grows through backward and peaks at its end (or at the loss, for large
    /// vocabularies), and activation checkpointing saves less than the textbook figure: each recomputed block's
    /// saved inputs are held again until the end.
    /// </remarks>
    /// <param name="chunked">Kept for callers: with the blocked head no figure here differs between the engines any more.</param>
    /// <param name="hostLoss">The loss runs in the host kernel (see <see cref="HeadLossEstimate.ForwardPeak"/>).</param>
    public static ActivationEstimate Activations(GptConfig c, Precision precision, long batch, long seq, bool checkpointing, bool chunked,
        bool hostLoss = false)
    {
        long e = ActivationBytes(precision);
        long t = batch * seq, h = c.Hidden, v = c.VocabSize, l = c.Layers;
        bool dropout = c.Dropout > 0;
        long block = BlockBytes(c, precision, batch, seq);
        long blockInput = t * h * e;
        // Token ids (input, target, the embedding's copy), the embedding dropout mask, ln_f's input.
        long outside = 3 * t * 8 + (dropout ? t * h : 0) + t * h * e;
        long body = outside + (checkpointing ? l * blockInput : l * block);
        // The blocked head + loss keeps no logits: its forward makes d/d(hidden) and the tied weight's gradient at once.
        long forwardSaved = body + HeadLossEstimate.Kept(t, h, v, precision);
        long atLoss = body + HeadLossEstimate.ForwardPeak(t, h, v, precision, hostLoss);

        // Through the blocks (measured): what the body kept, the gradients in flight, the largest fresh weight gradient
        // (mlp, 4·h² elements) and, with checkpointing, the block being recomputed (its saved activations and the
        // temporaries of its re-run forward: about 1.25 blocks). The head's weight gradient has gone to .grad or its chunk.
        long atBlocks = body + GradientsInFlight(checkpointing) * t * h * e + 4 * h * h * e + (checkpointing ? 5 * block / 4 : 0);

        return atLoss >= atBlocks
            ? new ActivationEstimate(forwardSaved, atLoss, "the LM head and loss (blocked; gradients made in forward)")
            : new ActivationEstimate(forwardSaved, atBlocks, checkpointing ? "backward through a recomputed block" : "backward through the blocks");
    }

    /// <summary>
    /// Hidden-sized tensors per token in flight through the blocks' backward (measured, fp32, with the blocked head): about
    /// 12 (d/d(hidden) from the head among them); about 4 to 5.5 when blocks are recomputed, whose saved tensors are fewer.
    /// </summary>
    private static long GradientsInFlight(bool checkpointing) => checkpointing ? 6 : 12;

    /// <summary>
    /// Kept by one block for backward, per the ops in GptModel (elements x e): ln_1 input, ln_1 output (c_attn's input),
    /// qkv (3h: q, k, v are views), attention output and its contiguous copy (c_proj's input), the residual sum (ln_2's
    /// input), ln_2 output, c_fc output (gelu's input) and gelu output = 17·h per token, plus the attention's fp32
    /// log-sum-exp per head. Where attention may run as batched products (<see cref="Generation.BatchedCausalAttention"/>,
    /// bf16 on a CPU; the device is not known here, so counted for any) four score-sized buffers come on top: it keeps
    /// the probabilities, and the engine measured 1.5 MiB more than that on gpt2-tiny 2L h128 4 heads s128 b2 (not yet
    /// explained, so counted generously).
    /// </summary>
    private static long BlockBytes(GptConfig c, Precision precision, long batch, long seq)
    {
        long e = ActivationBytes(precision);
        long t = batch * seq, h = c.Hidden, a = c.Heads;
        bool batched = precision == Precision.Bf16 && seq <= Generation.BatchedCausalAttention.MaxSequence && c.Dropout == 0;
        long block = 17 * t * h * e + 4 * batch * a * seq + (batched ? 4 * batch * a * seq * seq * e : 0);
        if (c.Dropout > 0)
        {
            // Two residual dropout masks (1 byte each); attention dropout leaves the fused kernel for the math path,
            // which keeps the scaled q and k, its dropout mask and three score-sized buffers (scores, softmax, dropped
            // probabilities) in fp32 in every precision: 13 bytes per score, measured on gpt2 6L h768 (fp32 and bf16).
            block += 2 * t * h + 2 * t * h * e + batch * a * seq * seq * (3 * 4 + 1);
        }
        return block;
    }

    /// <summary>
    /// The chunk engine's stretches of non-model memory that can decide its device need, each with the module whose
    /// pre-backward hook ends it (measured with the engine's own sampler: tests/PatrickStar.Tests/Estimation).
    /// </summary>
    /// <remarks>
    /// The stretch from the LM head's forward to its pre-backward holds the blocked head + loss's forward peak
    /// (<see cref="HeadLossEstimate.ForwardPeak"/>); the head's backward only hands over what that forward kept; the
    /// embedding's backward makes its dense gradient. With bf16 storage and fp32 compute every other weight is upcast to
    /// fp32 while it is used and its gradient is made in fp32 before the bf16 copy. The runtime's own buffers come on top
    /// (<see cref="MemoryEstimator.RuntimeBuffers"/>).
    /// </remarks>
    public static IReadOnlyList<NonModelPhase> Phases(GptConfig c, Precision precision, long batch, long seq, bool checkpointing, bool hostLoss = false)
    {
        long e = ActivationBytes(precision), ep = ParameterBytes(precision);
        long t = batch * seq, h = c.Hidden, v = c.VocabSize;
        bool upcast = ep != e;
        long saved = Activations(c, precision, batch, seq, checkpointing, chunked: true).Saved;
        long body = saved - HeadLossEstimate.Kept(t, h, v, precision); // what the model kept before the head
        long table = v * h; // the tied embedding / LM head weight, in elements
        // A fresh weight gradient in the storage dtype; with upcasting also the fp32 weight and fp32 gradient it came from.
        long WeightGradient(long elements) => upcast ? elements * (e + e + ep) : elements * ep;

        long loss = body + HeadLossEstimate.ForwardPeak(t, h, v, precision, hostLoss);
        long head = saved;
        long embedding = body + table * e + (upcast ? table * ep : 0);
        // Through the blocks: hidden-sized gradients per token in flight (d/d(hidden) from the head among them),
        // the largest fresh weight gradient (mlp, 4·h² elements) and, with checkpointing, the block being recomputed.
        long recomputed = checkpointing ? BlockBytes(c, precision, batch, seq) : 0;
        long blocks = body + GradientsInFlight(checkpointing) * t * h * e + WeightGradient(4 * h * h) + recomputed;
        return new NonModelPhase[]
        {
            new("the LM head and loss (blocked; gradients made in forward)", loss, "lm_head"),
            new("the LM head's backward (hands over the gradients)", head, "transformer.ln_f"),
            new(checkpointing ? "backward through a recomputed block" : "backward through the blocks", blocks, null),
            new("the embedding's backward (its dense gradient)", embedding, "transformer.wte"),
        };
    }
}
