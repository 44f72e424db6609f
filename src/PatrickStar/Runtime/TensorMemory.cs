using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace PatrickStar.Runtime;

/// <summary>Raw addresses of tensor data, for kernels that work on memory directly (the CPU Adam).</summary>
public static class TensorMemory
{
    // TorchSharp keeps its own binding of this export internal; the native library is already loaded.
    [DllImport("LibTorchSharp", EntryPoint = "THSStorage_data_ptr")]
    private static extern IntPtr StorageDataPointer(IntPtr tensor);

    [DllImport("LibTorchSharp", EntryPoint = "THSStorage_nbytes")]
    private static extern nuint StorageBytes(IntPtr tensor);

    /// <summary>Bytes of the tensor's storage from its first element on: a view may be followed by more of its allocation.</summary>
    public static long BytesFromStart(Tensor t) => (long)StorageBytes(t.Handle) - t.storage_offset() * ElementSize(t.dtype);

    /// <summary>Address of the first element of a contiguous CPU tensor (its storage plus its offset).</summary>
    public static unsafe void* Address(Tensor t)
    {
        if (t.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException($"only CPU tensors have an address the host can use; this one is on {t.device}.");
        return (void*)DataPointer(t);
    }

    /// <summary>Address of the first element of a contiguous tensor on any device (a device address for a CUDA tensor).</summary>
    public static nint DataPointer(Tensor t)
    {
        if (!t.is_contiguous())
            throw new ArgumentException("the tensor must be contiguous.");
        return StorageDataPointer(t.Handle) + (nint)(t.storage_offset() * ElementSize(t.dtype));
    }

    /// <summary>Bytes per element of the dtypes chunks and kernels use.</summary>
    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.BFloat16 or ScalarType.Float16 => 2,
        ScalarType.Float64 or ScalarType.Int64 => 8,
        _ => throw new ArgumentException($"unsupported dtype {dtype}"),
    };
}
