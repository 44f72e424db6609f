using PatrickStar.Config;
using PatrickStar.Memory;
using PatrickStar.Models.Gpt;
using PatrickStar.Profiling;
using PatrickStar.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Models.Estimation;

/// <summary>A measured activation peak: native in-use bytes before the pass and the peak above that during it.</summary>
public sealed record MeasuredActivations(long Baseline, long Peak);

/// <summary>
/// Measures what <see cref="MemoryEstimator.Activations"/> predicts: one training forward+backward of a real
/// <see cref="GptModel"/> under a <see cref="PeakSampler"/> reading glibc's in-use bytes (mallinfo2).
/// </summary>
/// <remarks>
/// Accounting, to match the estimate: parameters and their <c>.grad</c> tensors are model data, so a first pass
/// allocates the gradients, they are zeroed in place (kept), and the baseline is read after that. The peak is
/// then the maximum in-use during the second pass minus the baseline: activations kept for backward, temporaries,
/// and each weight's fresh gradient before autograd adds it into <c>.grad</c>. This is the plain engine's view
/// (no tied-gradient copy held across backward, as the chunk engine does).
/// </remarks>
public static class ActivationMeter
{
    public static MeasuredActivations Measure(GptConfig config, Precision precision, int batch, int seq, bool checkpointing, long seed = 1)
    {
        manual_seed(seed);
        using var model = new GptModel(config);
        var stored = PatrickStar.Training.PlainEngine.ComputeType(precision);
        if (stored != ScalarType.Float32) model.to(stored);
        model.ActivationType = PatrickStar.Training.PlainEngine.ActivationType(precision);
        model.train();
        model.Transformer.CheckpointBlocks = checkpointing;
        using var input = randint(config.VocabSize, new long[] { batch, seq }, dtype: ScalarType.Int64);
        using var target = randint(config.VocabSize, new long[] { batch, seq }, dtype: ScalarType.Int64);

        Pass(model, input, target); // allocates every .grad: model data, not activations
        using (no_grad())
            foreach (var p in model.parameters())
                using (var g = p.grad) g?.zero_();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        long baseline = MemoryMeter.NativeInUse();
        using var sampler = new PeakSampler();
        sampler.Start();
        Pass(model, input, target);
        long peak = sampler.TakePeak();
        sampler.Stop();
        return new MeasuredActivations(baseline, Math.Max(0, peak - baseline));
    }

    private static void Pass(GptModel model, Tensor input, Tensor target)
    {
        using var scope = NewDisposeScope();
        var loss = LanguageModelLoss.Of(model, input, target);
        loss.backward();
    }
}
