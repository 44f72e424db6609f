using PatrickStar.Chunks;
using PatrickStar.Models.Gpt;
using PatrickStar.Models.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace PatrickStar.Models;

/// <summary>
/// Hugging Face weights (a folder or a safetensors file, GPT-2 or LLaMA) opened for a streamed build: the chunk engine
/// reads each parameter's tensor straight into its chunk slot, one at a time, so the whole fp32 model never exists.
/// The file is matched against the model (names, shapes) when opened, before anything is read.
/// </summary>
public sealed class PretrainedWeights : IParameterInitializer, IDisposable
{
    private readonly IParameterInitializer random;
    private readonly IReadOnlyDictionary<string, Action<Tensor>> readers;
    private readonly IDisposable source;

    private PretrainedWeights(IParameterInitializer random, IReadOnlyDictionary<string, Action<Tensor>> readers, IDisposable source)
    {
        this.random = random;
        this.readers = readers;
        this.source = source;
    }

    /// <summary>Opens <paramref name="path"/> for <paramref name="model"/> (a <see cref="GptModel"/> or <see cref="LlamaForCausalLM"/>, usually of placeholders).</summary>
    public static PretrainedWeights Open(Module<Tensor, Tensor> model, string path)
    {
        IDisposable source;
        var readers = model switch
        {
            LlamaForCausalLM llama => HuggingFaceLlamaFolder.Readers(llama, path, out source),
            GptModel gpt => HuggingFaceGpt2.Readers(gpt, path, out source),
            _ => throw new ArgumentException($"weights of '{path}' load into a GPT-2 or a LLaMA, not a {model.GetType().Name}."),
        };
        return new PretrainedWeights((IParameterInitializer)model, readers, source);
    }

    /// <summary>
    /// Draws the model's own initial values first, then reads the file's over them: a whole build draws them too before its
    /// import overwrites them, so the random stream afterwards (dropout) is the same either way.
    /// </summary>
    public void InitializeParameter(string name, Parameter parameter, Tensor target)
    {
        random.InitializeParameter(name, parameter, target);
        readers[name](target);
    }

    /// <summary>Another rank keeps it: only the draws happen, nothing is read.</summary>
    public void SkipParameter(string name, Parameter parameter) => random.SkipParameter(name, parameter);

    public void Dispose() => source.Dispose();
}
