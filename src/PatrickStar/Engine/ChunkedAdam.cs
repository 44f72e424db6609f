using PatrickStar.Config;
using PatrickStar.Memory;
using PatrickStar.Optimizer;
using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>
/// Adam over the chunks this rank owns, chunk index by chunk index: the gradients (in the parameter slots, or the
/// fp32 gradient chunks when accumulating), the master, momentum and variance of the same index, then the new
/// compute-precision parameters back into the parameter chunk.
/// </summary>
internal sealed class ChunkedAdam(ChunkLists chunks, AdamSettings adam, ScalarType computeType, bool tensorAdamOnDevice,
    TierMemory device, ChunkCollectives collectives)
{
    /// <summary>Adam's step count (bias correction); saved and restored by checkpoints.</summary>
    public long StepCount { get; set; }

    /// <summary>The L2 norm of every rank's gradients together (non-finite on every rank when any rank overflowed).</summary>
    public double GlobalGradientNorm()
    {
        using var scope = NewDisposeScope();
        double sum = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            if (!chunks.HasState(i)) continue;
            // One read per gradient on the CPU (no fp32 copy of a 16-bit chunk); tensor ops elsewhere.
            double norm = PatrickStar.Optimizer.GradientClipping.GlobalNorm([GradientOf(i)]);
            sum += norm * norm;
        }
        // Each rank holds the gradients of the chunks it owns: the sum of squares over ranks is the global one, and a
        // non-finite value on any rank (fp16 overflow) makes the sum non-finite everywhere, so every rank skips alike.
        return Math.Sqrt(collectives.SumOverRanks(sum));
    }

    /// <summary>One Adam step over every chunk this rank owns; gradients are multiplied by <paramref name="gradientMultiplier"/> (unscaling, clipping).</summary>
    public void Update(double learningRate, double gradientMultiplier)
    {
        StepCount++;
        for (int i = 0; i < chunks.Count; i++)
            if (chunks.HasState(i)) UpdateChunk(i, learningRate, gradientMultiplier);
    }

    /// <summary>The fp32 gradients of chunk i's used prefix, on the host (where the optimizer state lives).</summary>
    private Tensor GradientOf(int i)
    {
        var source = chunks.Accumulating ? chunks.Gradient[i] : chunks.Param[i];
        var prefix = source.UsedPart(chunks.Used(i));
        return prefix.device_type == DeviceType.CPU ? prefix : prefix.to(ScalarType.Float32).to(CPU);
    }

    /// <summary>
    /// Adam over chunk i, then the new compute-precision parameters into the parameter chunk. Optimizer
    /// state in CPU memory: the fused SIMD kernel updates each parameter's range in one pass and writes the
    /// compute-precision parameter itself (also for the device tier when the device is the CPU, so that where a
    /// chunk's state lives never changes a bit of the result). Optimizer state on a GPU (hybrid Adam): tensor ops there.
    /// </summary>
    private void UpdateChunk(int i, double lr, double gradientMultiplier)
    {
        using var scope = NewDisposeScope();
        var grad = GradientOf(i);
        var master = chunks.Master[i].Payload!;
        var m = chunks.Momentum[i].Payload!;
        var v = chunks.Variance[i].Payload!;
        var paramPayload = chunks.Param[i].Payload!;
        bool kernel = master.device_type == DeviceType.CPU && grad.device_type == DeviceType.CPU && grad.is_contiguous()
                      && paramPayload.device_type == DeviceType.CPU
                      && !(tensorAdamOnDevice && chunks.Master[i].Tier == device);
        if (kernel)
        {
            KernelUpdate(i, grad, master, m, v, paramPayload, lr, gradientMultiplier);
            return;
        }
        grad = grad.to(master.device).to(ScalarType.Float32);
        if (gradientMultiplier != 1.0) grad = grad.mul(gradientMultiplier);
        foreach (var mp in chunks.Param[i].Tensors)
        {
            long off = mp.Place.Offset, n = mp.Place.Numel;
            AdamMath.Update(master.narrow(0, off, n), grad.narrow(0, off, n), m.narrow(0, off, n), v.narrow(0, off, n),
                lr, adam, StepCount, mp.Decay);
        }
        long used = chunks.Used(i);
        paramPayload.narrow(0, 0, used).copy_(master.narrow(0, 0, used));
    }

    private unsafe void KernelUpdate(int i, Tensor grad, Tensor master, Tensor m, Tensor v, Tensor param, double lr, double gradientMultiplier)
    {
        var gradType = KernelAdam.ElementOf(grad.dtype);
        var paramType = KernelAdam.ElementOf(computeType);
        int gradSize = Runtime.TensorMemory.ElementSize(grad.dtype);
        int paramSize = Runtime.TensorMemory.ElementSize(computeType);
        float* pm = (float*)Runtime.TensorMemory.Address(master);
        float* pmom = (float*)Runtime.TensorMemory.Address(m);
        float* pvar = (float*)Runtime.TensorMemory.Address(v);
        byte* pg = (byte*)Runtime.TensorMemory.Address(grad);
        byte* pp = (byte*)Runtime.TensorMemory.Address(param);
        int threads = KernelAdam.Threads;
        foreach (var mp in chunks.Param[i].Tensors)
        {
            long off = mp.Place.Offset;
            var h = new AdamHyperparameters(lr, adam.Beta1, adam.Beta2, adam.Eps, mp.Decay ? adam.WeightDecay : 0,
                DecoupledWeightDecay: adam.Type == OptimizerType.AdamW, StepCount, InverseLossScale: gradientMultiplier);
            CpuAdamKernel.Step(pm + off, pmom + off, pvar + off, pg + off * gradSize, gradType,
                pp + off * paramSize, paramType, mp.Place.Numel, h, threads: threads);
        }
    }
}
