using TorchSharp;
using static TorchSharp.torch;

namespace PatrickStar.Engine;

/// <summary>Where the chunk optimizer reads a gradient: in place when it is in the memory of the state it updates, else copied there.</summary>
public static class OptimizerGradients
{
    /// <summary>
    /// True when a gradient on <paramref name="gradient"/> is read where it is by optimizer state on <paramref name="state"/>
    /// (hybrid Adam: device-resident state updates from device-resident gradients, no trip through the host). A CUDA device
    /// is named with its number by the tensors on it, so two numbers differ only between two GPUs.
    /// </summary>
    public static bool ReadInPlace(Device gradient, Device state) =>
        gradient.type == state.type && (gradient.type == DeviceType.CPU || gradient.index == state.index);
}
