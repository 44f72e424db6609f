using PatrickStar.Config;
using PatrickStar.Models.Estimation;
using PatrickStar.Models.Gpt;
using Xunit;

namespace PatrickStar.Tests.Estimation;

/// <summary>The blocked head + loss's figures in the activation estimate, computed by hand for gpt2-mini's sizes at batch 8 x 256.</summary>
public class HeadLossEstimateTests
{
    // gpt2-mini: 4 layers, hidden 192, 6 heads, GPT-2's vocabulary; t = 8 x 256 = 2048 tokens.
    private const long T = 2048, H = 192, V = 50257;

    /// <summary>
    /// Block rows: 2^23 / 50257 = 166. Kept = t·h·e + v·h·e_param. Forward peak = t·h·e + 4·v·h + max(block, bf16 copy):
    /// fp32: 1,572,864 + 38,597,376 (kept) + a group's fp32 logits (64 MiB: 2^24 / 50257 = 333 rows, whole 41-row blocks: 328)
    /// 4·328·50257 = 65,937,184 (in 166-row blocks without groups: 33,370,648);
    /// bf16-fp32: 1,572,864 + 19,298,688 (kept), block 33,370,648 + max(4·166·(2^22 / 192 = 21,845) + 4·2^22, 2·4·2^22)
    /// = 33,370,648 + max(31,282,296, 33,554,432) = 66,925,080.
    /// bf16: blocks of 2^21 / 50257 = 41 rows in groups of 41·⌊(2^25 / 50257 = 667) / 41⌋ = 656 rows, fewer than 2048, so
    /// d/dW is summed in fp32: kept 786,432 + 4·v·h = 38,597,376; forward peak = kept + a group's bf16 logits 2·656·50257 =
    /// 65,937,184 + max(a block's fp32 copy 4·41·50257 = 8,242,148, a slice's bf16 product 2·2^22 = 8,388,608).
    /// </summary>
    [Theory]
    [InlineData(Precision.Fp32, 40_170_240, 106_107_424)]
    [InlineData(Precision.Bf16, 39_383_808, 113_709_600)]
    [InlineData(Precision.Bf16Fp32, 20_871_552, 107_095_320)]
    public void HeadFiguresAreTheHandComputedOnes(Precision precision, long kept, long forwardPeak)
    {
        Assert.Equal(kept, HeadLossEstimate.Kept(T, H, V, precision));
        Assert.Equal(forwardPeak, HeadLossEstimate.ForwardPeak(T, H, V, precision));
    }

    /// <summary>
    /// The bench model's head in bf16 (t = 2 × 256 = 512 rows, h = 768): one group holds every row, so d/dW is its bf16
    /// product: kept 512·768·2 + 50257·768·2 = 77,981,184; forward peak = kept + the group's bf16 logits 2·512·50257 =
    /// 51,463,168 + one block's fp32 copy 4·41·50257 = 8,242,148 (before the groups: 232,370,688).
    /// </summary>
    [Fact]
    public void OneGroupKeepsTheWeightGradientInBf16()
    {
        Assert.Equal(77_981_184, HeadLossEstimate.Kept(512, 768, V, Precision.Bf16));
        Assert.Equal(137_686_500, HeadLossEstimate.ForwardPeak(512, 768, V, Precision.Bf16));
    }

    /// <summary>
    /// gpt2-mini fp32 without dropout: a block keeps 17·t·h·4 + 4·8·6·256 = 26,787,840 B; the body (ids 3·t·8, ln_f's input
    /// t·h·4, 4 blocks) 108,773,376 B; saved = body + 40,170,240; the peak is the head's forward, body + 106,107,424 =
    /// 214,880,800 B (the blocks' backward: body + 12·t·h·4 + 4·h²·4 = 128,237,568 B). Before the blocked head the same
    /// estimate was 972 MB (the fp32 logits, 412 MB, kept and copied once more); in 166-row blocks without groups, 182,314,264 B.
    /// </summary>
    [Fact]
    public void Gpt2MiniPeakIsTheHeadsForward()
    {
        var config = new GptConfig(50257, 256, 4, 192, 6);
        var estimate = ActivationModel.Activations(config, Precision.Fp32, 8, 256, checkpointing: false, chunked: true);
        Assert.Equal(148_943_616, estimate.Saved);
        Assert.Equal(214_880_800, estimate.Peak);
        Assert.StartsWith("the LM head and loss", estimate.PeakPhase);
    }
}
