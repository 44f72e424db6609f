using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>Argument checks shared by every backend, so that a misuse fails the same way everywhere.</summary>
internal static class CollectiveArgs
{
    public static void CheckBuffer(Tensor t, string call, string name)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.device_type != DeviceType.CPU)
            throw new ArgumentException($"{call}: {name} is on {t.device}; the communicators work on CPU buffers (copy the chunk to the host first).");
        if (!t.is_contiguous())
            throw new ArgumentException($"{call}: {name} must be contiguous (a chunk buffer or a narrow() of one).");
        if (t.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new ArgumentException($"{call}: {name} has dtype {t.dtype}; only Float32, BFloat16 and Float16 buffers are supported.");
    }

    public static void CheckPair(Tensor input, Tensor output, string call, long outputPerInput, long inputPerOutput)
    {
        CheckBuffer(input, call, "input");
        CheckBuffer(output, call, "output");
        if (input.dtype != output.dtype)
            throw new ArgumentException($"{call}: input is {input.dtype} but output is {output.dtype}; they must match.");
        if (output.numel() * inputPerOutput != input.numel() * outputPerInput)
            throw new ArgumentException(outputPerInput > 1
                ? $"{call}: output has {output.numel()} elements; it must have Size × input = {outputPerInput} × {input.numel()} = {outputPerInput * input.numel()}."
                : inputPerOutput > 1
                    ? $"{call}: input has {input.numel()} elements; it must have Size × output = {inputPerOutput} × {output.numel()} = {inputPerOutput * output.numel()}."
                    : $"{call}: input has {input.numel()} elements and output {output.numel()}; they must be equal.");
    }

    public static void CheckRoot(int root, int size, string call)
    {
        if (root < 0 || root >= size)
            throw new ArgumentOutOfRangeException(nameof(root), $"{call}: root {root} is not a rank of this job (0..{size - 1}).");
    }

    /// <summary>The combined value of fp32 accumulators: in-process and single-process backends use this.</summary>
    public static Tensor Combine(Tensor accumulator, Tensor next, ReduceOp op) => op switch
    {
        ReduceOp.Sum or ReduceOp.Average => accumulator.add_(next),
        ReduceOp.Max => accumulator.copy_(maximum(accumulator, next)),
        ReduceOp.Min => accumulator.copy_(minimum(accumulator, next)),
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    public static double Combine(double a, double b, ReduceOp op) => op switch
    {
        ReduceOp.Sum or ReduceOp.Average => a + b,
        ReduceOp.Max => Math.Max(a, b),
        ReduceOp.Min => Math.Min(a, b),
        _ => throw new ArgumentOutOfRangeException(nameof(op)),
    };

    /// <summary>Views a contiguous tensor as one flat run of elements (a view: dispose it).</summary>
    public static Tensor Flat(Tensor t) => t.view(-1);
}
