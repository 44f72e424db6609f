using PatrickStar.Optimizer;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Training;

/// <summary>Which vector widths this CPU runs, for kernel tests that compare every width with the scalar form.</summary>
internal static class SimdWidthSupport
{
    /// <summary>True when this CPU accelerates <paramref name="width"/> (the scalar form runs everywhere); says so when not.</summary>
    public static bool Runs(SimdWidth width, ITestOutputHelper output)
    {
        bool runs = width switch
        {
            SimdWidth.Vector512 => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated,
            SimdWidth.Vector256 => System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated,
            _ => true,
        };
        if (!runs) output.WriteLine($"{width} is not accelerated on this CPU: not compared here");
        return runs;
    }
}
