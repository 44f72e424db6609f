namespace PatrickStar.Models.Gpt;

/// <summary>Sizes of a GPT-2 style decoder-only transformer.</summary>
public sealed record GptConfig(int VocabSize, int ContextLength, int Layers, int Hidden, int Heads, double Dropout = 0.0)
{
    /// <summary>GPT-2's BPE vocabulary.</summary>
    public const int Gpt2VocabSize = 50257;

    public int HeadSize => Hidden / Heads;

    /// <summary>Throws with a message naming the bad field when the sizes do not make a model.</summary>
    public void Validate()
    {
        var errors = new List<string>();
        if (VocabSize < 1) errors.Add($"vocab_size = {VocabSize}: must be at least 1");
        if (ContextLength < 1) errors.Add($"n_positions = {ContextLength}: must be at least 1");
        if (Layers < 1) errors.Add($"n_layer = {Layers}: must be at least 1");
        if (Hidden < 1) errors.Add($"n_embd = {Hidden}: must be at least 1");
        if (Heads < 1) errors.Add($"n_head = {Heads}: must be at least 1");
        else if (Hidden % Heads != 0) errors.Add($"n_embd = {Hidden} is not divisible by n_head = {Heads}");
        if (Dropout < 0 || Dropout >= 1) errors.Add($"dropout = {Dropout}: must be in [0, 1)");
        if (errors.Count > 0) throw new ArgumentException("Invalid model sizes: " + string.Join("; ", errors) + ".");
    }

    /// <summary>Parameters with the LM head tied to the token embedding (as GPT-2 counts them).</summary>
    public long ParameterCount
    {
        get
        {
            long h = Hidden;
            long perBlock = 12 * h * h + 13 * h; // qkv 3h²+3h, proj h²+h, fc 4h²+4h, proj 4h²+h, two LayerNorms 4h
            return (long)VocabSize * h + (long)ContextLength * h + Layers * perBlock + 2 * h;
        }
    }

    /// <summary>Model data with Adam in mixed precision: 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter.</summary>
    public long ModelDataBytes => ParameterCount * 16;

    /// <summary>
    /// Model FLOPs of one forward + backward pass over <paramref name="batch"/> sequences of
    /// <paramref name="seq"/> tokens, without recomputation (Megatron-LM / Narayanan et al. 2021):
    /// 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)). It counts the matmuls (and the attention score and
    /// value products) and the LM head; it does not count elementwise work.
    /// </summary>
    public double TrainingFlops(long batch, long seq)
    {
        double h = Hidden, l = Layers;
        return 72.0 * batch * seq * l * h * h * (1 + seq / (6 * h) + VocabSize / (12 * l * h));
    }

    public const string FlopsFormula = "72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)) per forward+backward (Megatron-LM model FLOPs, no recompute)";
}
