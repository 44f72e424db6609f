using PatrickStar.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Training;

/// <summary>The result of evaluating a language model over a token stream.</summary>
public sealed record EvaluationResult(double MeanLoss, long Tokens, int Windows, int Batches)
{
    public double Perplexity => Math.Exp(MeanLoss);
}

/// <summary>
/// Mean next-token loss over every consecutive, non-overlapping window of a token stream (window i
/// predicts tokens[i·seq + 1 .. (i+1)·seq]), in order: deterministic, with no dropout and no autograd.
/// </summary>
public static class SequentialEvaluation
{
    /// <summary>Number of full windows of <paramref name="seq"/> predicted tokens in <paramref name="tokenCount"/> tokens.</summary>
    public static int WindowCount(int tokenCount, int seq) => tokenCount < seq + 1 ? 0 : (tokenCount - 1) / seq;

    public static EvaluationResult Run(torch.nn.Module<Tensor, Tensor> model, ReadOnlySpan<int> tokens, int batch, int seq, Device device, int? maxBatches = null)
    {
        if (batch < 1) throw new ArgumentException($"--batch {batch}: must be at least 1.");
        if (seq < 1) throw new ArgumentException($"--seq {seq}: must be at least 1.");
        int windows = WindowCount(tokens.Length, seq);
        if (windows == 0)
            throw new DataException($"the data has {tokens.Length:N0} tokens, fewer than seq + 1 = {seq + 1:N0}; give more text or a shorter --seq.");
        int batches = (windows + batch - 1) / batch;
        if (maxBatches is int m && m < batches)
        {
            if (m < 1) throw new ArgumentException($"--max-batches {m}: must be at least 1.");
            batches = m;
            windows = Math.Min(windows, m * batch);
        }

        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            double lossSum = 0; // sum over windows of the window's mean loss; all windows have seq tokens
            for (int b = 0; b < batches; b++)
            {
                int first = b * batch;
                int count = Math.Min(batch, windows - first);
                var x = new long[count * seq];
                var y = new long[count * seq];
                for (int w = 0; w < count; w++)
                {
                    int start = (first + w) * seq;
                    for (int t = 0; t < seq; t++)
                    {
                        x[w * seq + t] = tokens[start + t];
                        y[w * seq + t] = tokens[start + t + 1];
                    }
                }
                using var scope = NewDisposeScope();
                var input = tensor(x, new long[] { count, seq }, ScalarType.Int64).to(device);
                var target = tensor(y, new long[] { count, seq }, ScalarType.Int64).to(device);
                lossSum += LanguageModelLoss.Of(model, input, target).item<float>() * count;
            }
            return new EvaluationResult(lossSum / windows, (long)windows * seq, windows, batches);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }
}
