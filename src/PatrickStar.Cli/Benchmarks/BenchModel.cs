using PatrickStar.Config;
using PatrickStar.Models;
using PatrickStar.Models.Gpt;

namespace PatrickStar.Cli.Benchmarks;

/// <summary>
/// The model a benchmark part trains, of either family, on GPT-2's vocabulary (the tokenizer of the bench's data): a GPT-2
/// of the given sizes, or a LLaMA of LLaMA's proportions at that width (grouped-query attention, an MLP of ~8/3 the width).
/// </summary>
public static class BenchModel
{
    public static readonly string[] Families = ["gpt2", "llama"];

    /// <summary>The model section for <paramref name="family"/>; <paramref name="kvHeads"/> null: <see cref="DefaultKvHeads"/>.</summary>
    public static ModelSection Section(string family, int seq, int layers, int hidden, int heads, int? kvHeads = null) => family switch
    {
        "gpt2" => new ModelSection
        {
            Preset = null, VocabSize = GptConfig.Gpt2VocabSize, ContextLength = seq, Layers = layers, Hidden = hidden, Heads = heads, Dropout = 0,
        },
        "llama" => new ModelSection
        {
            Preset = null, Family = "llama", VocabSize = GptConfig.Gpt2VocabSize, ContextLength = seq, Layers = layers, Hidden = hidden, Heads = heads,
            KvHeads = kvHeads ?? DefaultKvHeads(heads), Intermediate = ModelFamilies.DefaultIntermediate(hidden),
        },
        _ => throw new ArgumentException($"--family {family}: use {string.Join(" or ", Families)}."),
    };

    /// <summary>A quarter of the query heads share each key/value head (Llama-2-70B and Llama-3 use 8 : 1 to 4 : 1), when that divides them.</summary>
    public static int DefaultKvHeads(int heads) => heads % 4 == 0 ? heads / 4 : heads % 2 == 0 ? heads / 2 : heads;

    /// <summary>The family's model FLOPs formula, for the report.</summary>
    public static string FlopsFormula(ModelChoice choice) => choice.IsLlama ? LlamaFlopsFormula : GptConfig.FlopsFormula;

    public const string LlamaFlopsFormula =
        "6·B·s·(l·(2h² + 2h·h_kv + 3h·i + 2s·h) + h·V) per forward+backward (model FLOPs, causal mask not discounted, no recompute)";
}
