namespace PatrickStar.Models.Llama;

/// <summary>Llama-3's rotary frequency scaling (HF rope_scaling with rope_type "llama3").</summary>
public sealed record RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositions);

/// <summary>Sizes of a LLaMA-family decoder (HF LlamaConfig's fields, named as there in the comments).</summary>
/// <param name="ContextLength">max_position_embeddings.</param>
/// <param name="Hidden">hidden_size.</param>
/// <param name="Heads">num_attention_heads.</param>
/// <param name="KvHeads">num_key_value_heads: fewer than Heads is grouped-query attention.</param>
/// <param name="Intermediate">intermediate_size of the SwiGLU MLP.</param>
/// <param name="RopeTheta">rope_theta.</param>
/// <param name="RmsEps">rms_norm_eps.</param>
/// <param name="TieEmbeddings">tie_word_embeddings: the LM head is the token embedding.</param>
public sealed record LlamaConfig(int VocabSize, int ContextLength, int Layers, int Hidden, int Heads, int KvHeads, int Intermediate,
    double RopeTheta = 10000, double RmsEps = 1e-5, bool TieEmbeddings = false, RopeScaling? Scaling = null)
{
    public int HeadSize => Hidden / Heads;

    /// <summary>Throws with a message naming the bad field when the sizes do not make a model.</summary>
    public void Validate()
    {
        var errors = new List<string>();
        if (VocabSize < 1) errors.Add($"vocab_size = {VocabSize}: must be at least 1");
        if (ContextLength < 1) errors.Add($"max_position_embeddings = {ContextLength}: must be at least 1");
        if (Layers < 1) errors.Add($"num_hidden_layers = {Layers}: must be at least 1");
        if (Intermediate < 1) errors.Add($"intermediate_size = {Intermediate}: must be at least 1");
        if (Heads < 1 || KvHeads < 1) errors.Add($"num_attention_heads = {Heads}, num_key_value_heads = {KvHeads}: must be at least 1");
        else
        {
            if (Hidden % Heads != 0 || HeadSize % 2 != 0)
                errors.Add($"hidden_size = {Hidden} must be num_attention_heads = {Heads} times an even head size (rotary embeddings rotate pairs)");
            if (Heads % KvHeads != 0) errors.Add($"num_attention_heads = {Heads} is not a multiple of num_key_value_heads = {KvHeads}");
        }
        if (!(RopeTheta > 0)) errors.Add($"rope_theta = {RopeTheta}: must be positive");
        if (!(RmsEps > 0)) errors.Add($"rms_norm_eps = {RmsEps}: must be positive");
        if (Scaling is { } s && !(s.Factor > 0 && s.LowFreqFactor > 0 && s.HighFreqFactor > s.LowFreqFactor && s.OriginalMaxPositions > 0))
            errors.Add($"rope_scaling = {s}: needs factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0");
        if (errors.Count > 0) throw new ArgumentException("Invalid LLaMA sizes: " + string.Join("; ", errors) + ".");
    }

    /// <summary>Parameters as HF counts them (a tied head adds none).</summary>
    public long ParameterCount
    {
        get
        {
            long h = Hidden, kv = (long)KvHeads * HeadSize;
            long perLayer = 2 * h * h + 2 * h * kv + 3 * h * Intermediate + 2 * h; // q, o; k, v; gate, up, down; two RMSNorms
            long embedding = (long)VocabSize * h;
            return embedding + Layers * perLayer + h + (TieEmbeddings ? 0 : embedding);
        }
    }

    /// <summary>
    /// Model FLOPs of one forward + backward (3x the forward's 2 FLOPs per multiply-add): the projections and MLP,
    /// the attention score and value products (causal masking not discounted), and the LM head.
    /// </summary>
    public double TrainingFlops(long batch, long seq)
    {
        double h = Hidden, kv = (double)KvHeads * HeadSize, tokens = (double)batch * seq;
        double perToken = Layers * (2 * h * h + 2 * h * kv + 3 * h * Intermediate + 2 * seq * h) + h * VocabSize;
        return 6 * tokens * perToken;
    }
}
