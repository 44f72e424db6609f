using PatrickStar.Models.Gpt;
using Xunit;

namespace PatrickStar.Tests.Models;

public class GptGemmsTests
{
    /// <summary>The products the ceiling part times add up to the model FLOPs MFU is computed from.</summary>
    [Theory]
    [InlineData(6, 768, 12, 256, 2, 50257)]
    [InlineData(1, 32, 2, 16, 1, 64)]
    [InlineData(12, 1024, 16, 512, 4, 50257)]
    public void ProductsAddUpToTheModelFlops(int layers, int hidden, int heads, int seq, int batch, int vocab)
    {
        var config = new GptConfig(vocab, seq, layers, hidden, heads);
        var gemms = GptGemms.OfStep(config, batch, seq);
        double sum = gemms.Sum(g => g.StepFlops);
        Assert.Equal(config.TrainingFlops(batch, seq), sum, 1e-9 * sum);
        // Backward is twice forward, product by product: each forward product has a dgrad and a wgrad of its size.
        double forward = gemms.Where(g => g.Pass == "forward").Sum(g => g.StepFlops);
        Assert.Equal(2 * forward, sum - forward, 1e-9 * sum);
    }

    [Fact]
    public void LinearProductsHaveTheWeightsShapes()
    {
        var config = new GptConfig(100, 16, 2, 32, 4);
        var gemms = GptGemms.OfStep(config, 1, 16).ToDictionary(g => g.Name);
        Assert.Equal((32L, 96L), (gemms["attn.c_attn (QKV)"].K, gemms["attn.c_attn (QKV)"].N));
        Assert.Equal((32L, 16L, 96L), (gemms["attn.c_attn (QKV) dW"].M, gemms["attn.c_attn (QKV) dW"].K, gemms["attn.c_attn (QKV) dW"].N));
        Assert.Equal((100L, 16L, 32L), (gemms["lm_head dW"].M, gemms["lm_head dW"].K, gemms["lm_head dW"].N));
        Assert.Equal(4, gemms["attention Q·Kᵀ"].Batch);
        Assert.Equal(2, gemms["mlp.c_fc"].Count);
    }
}
