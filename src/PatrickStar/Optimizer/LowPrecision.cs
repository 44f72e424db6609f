using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace PatrickStar.Optimizer;

/// <summary>How one element is stored in memory.</summary>
public enum ElementType { Float32, BFloat16, Float16 }

/// <summary>The vector width a CPU kernel runs at; <see cref="Auto"/> picks <see cref="LowPrecision.Best"/>.</summary>
public enum SimdWidth { Auto, Vector512, Vector256, Scalar }

/// <summary>
/// fp32 &lt;-&gt; bf16 / fp16 conversions, scalar and vectorized, with identical bits on every path.
/// Narrowing rounds to nearest, ties to even; overflow becomes infinity; a NaN stays a NaN of the same
/// sign with the top of its payload kept and the quiet bit set (what x86's conversion instructions and
/// .NET's <see cref="Half"/> cast do). Widening is exact (an fp16 NaN comes back quiet, as with .NET's cast).
/// </summary>
public static unsafe class LowPrecision
{
    /// <summary>The widest vector the JIT accelerates here: Vector512, else Vector256, else Scalar.</summary>
    public static SimdWidth Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdWidth.Vector512
        : Vector256.IsHardwareAccelerated ? SimdWidth.Vector256
        : SimdWidth.Scalar;

    public static SimdWidth Resolve(SimdWidth width) => width == SimdWidth.Auto ? Best : width;

    public static int SizeOf(ElementType type) => type switch
    {
        ElementType.Float32 => sizeof(float),
        ElementType.BFloat16 or ElementType.Float16 => sizeof(ushort),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    // ---- Scalar ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | BFloat16QuietBit);
        // bf16 is the top half of fp32: add just under half an ulp, plus one more when the kept part is
        // odd, so exact ties go to even. The carry may ripple into the exponent, up to infinity: correct.
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    // .NET's Half casts are correctly rounded; the vector forms below are checked against them bit for bit.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    private const uint BFloat16QuietBit = 0x0040;

    // ---- Vector256 (one fp32 per 32-bit lane; the 16-bit value sits in the low half of a lane) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> BFloat16ToSingle(Vector256<uint> bits) => Vector256.ShiftLeft(bits, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> SingleToBFloat16(Vector256<float> value)
    {
        var bits = value.AsUInt32();
        var top = Vector256.ShiftRightLogical(bits, 16);
        var rounded = Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (top & Vector256<uint>.One), 16);
        var quietNaN = top | Vector256.Create(BFloat16QuietBit);
        var isNaN = ~Vector256.Equals(value, value).AsUInt32();
        return Vector256.ConditionalSelect(isNaN, quietNaN, rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> HalfToSingle(Vector256<uint> bits)
    {
        // Exponent and mantissa moved to fp32's positions; then each class gets its exponent fixed.
        var shifted = Vector256.ShiftLeft(bits & Vector256.Create(0x7FFFu), 13).AsInt32();
        var exponent = shifted & Vector256.Create(HalfExponentAt32);
        var normal = shifted + Vector256.Create(HalfToSingleRebias);
        // Infinity / NaN: exponent 31 must become 255; NaNs come back quiet.
        var isNaN = Vector256.GreaterThan(shifted, Vector256.Create(HalfExponentAt32));
        var special = (normal + Vector256.Create(HalfToSingleRebias)) | (isNaN & Vector256.Create(SingleQuietBit));
        // Zero / subnormal (m * 2^-24): build 2^-14 * (1 + m/1024) and subtract 2^-14, letting the FPU normalize.
        var subnormal = ((normal + Vector256.Create(1 << 23)).AsSingle() - Vector256.Create(SmallestNormalHalf)).AsInt32();
        var magnitude = Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256.Create(HalfExponentAt32)), special,
            Vector256.ConditionalSelect(Vector256.Equals(exponent, Vector256<int>.Zero), subnormal, normal));
        var sign = Vector256.ShiftLeft(bits & Vector256.Create(0x8000u), 16);
        return (magnitude.AsUInt32() | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> SingleToHalf(Vector256<float> value)
    {
        var bits = value.AsUInt32();
        var sign = Vector256.ShiftRightLogical(bits & Vector256.Create(0x8000_0000u), 16);
        var abs = (bits & Vector256.Create(0x7FFF_FFFFu)).AsInt32(); // non-negative: signed compares are safe
        // Normal results: rebias the exponent (127 -> 15) and round 23 mantissa bits to 10, ties to even.
        // A carry out of the mantissa bumps the exponent, which is how 65520 and up reach infinity.
        var lsb = Vector256.ShiftRightLogical(abs, 13) & Vector256<int>.One;
        var normal = Vector256.ShiftRightLogical(abs + Vector256.Create(SingleToHalfRebias) + lsb, 13);
        // Subnormal results: in 0.5 + |x| the fp32 ulp is 2^-24, fp16's subnormal step, so the add rounds for us.
        var subnormal = (abs.AsSingle() + Vector256.Create(0.5f)).AsInt32() - Vector256.Create(OneHalfBits);
        // Beyond fp16's range: infinity, or a quiet NaN keeping the top of the payload.
        var isNaN = Vector256.GreaterThan(abs, Vector256.Create(SingleInfinityBits));
        var special = Vector256.Create(HalfInfinityBits)
                      | (isNaN & (Vector256.Create(HalfQuietBit) | (Vector256.ShiftRightLogical(abs, 13) & Vector256.Create(0x3FF))));
        var magnitude = Vector256.ConditionalSelect(Vector256.LessThan(abs, Vector256.Create(SmallestNormalHalfBits)), subnormal,
            Vector256.ConditionalSelect(Vector256.LessThan(abs, Vector256.Create(HalfOverflowBits)), normal, special));
        return magnitude.AsUInt32() | sign;
    }

    // ---- Vector512: the same algorithms, 16 lanes ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> BFloat16ToSingle(Vector512<uint> bits) => Vector512.ShiftLeft(bits, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> SingleToBFloat16(Vector512<float> value)
    {
        var bits = value.AsUInt32();
        var top = Vector512.ShiftRightLogical(bits, 16);
        var rounded = Vector512.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + (top & Vector512<uint>.One), 16);
        var quietNaN = top | Vector512.Create(BFloat16QuietBit);
        var isNaN = ~Vector512.Equals(value, value).AsUInt32();
        return Vector512.ConditionalSelect(isNaN, quietNaN, rounded);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> HalfToSingle(Vector512<uint> bits)
    {
        var shifted = Vector512.ShiftLeft(bits & Vector512.Create(0x7FFFu), 13).AsInt32();
        var exponent = shifted & Vector512.Create(HalfExponentAt32);
        var normal = shifted + Vector512.Create(HalfToSingleRebias);
        var isNaN = Vector512.GreaterThan(shifted, Vector512.Create(HalfExponentAt32));
        var special = (normal + Vector512.Create(HalfToSingleRebias)) | (isNaN & Vector512.Create(SingleQuietBit));
        var subnormal = ((normal + Vector512.Create(1 << 23)).AsSingle() - Vector512.Create(SmallestNormalHalf)).AsInt32();
        var magnitude = Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512.Create(HalfExponentAt32)), special,
            Vector512.ConditionalSelect(Vector512.Equals(exponent, Vector512<int>.Zero), subnormal, normal));
        var sign = Vector512.ShiftLeft(bits & Vector512.Create(0x8000u), 16);
        return (magnitude.AsUInt32() | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> SingleToHalf(Vector512<float> value)
    {
        var bits = value.AsUInt32();
        var sign = Vector512.ShiftRightLogical(bits & Vector512.Create(0x8000_0000u), 16);
        var abs = (bits & Vector512.Create(0x7FFF_FFFFu)).AsInt32();
        var lsb = Vector512.ShiftRightLogical(abs, 13) & Vector512<int>.One;
        var normal = Vector512.ShiftRightLogical(abs + Vector512.Create(SingleToHalfRebias) + lsb, 13);
        var subnormal = (abs.AsSingle() + Vector512.Create(0.5f)).AsInt32() - Vector512.Create(OneHalfBits);
        var isNaN = Vector512.GreaterThan(abs, Vector512.Create(SingleInfinityBits));
        var special = Vector512.Create(HalfInfinityBits)
                      | (isNaN & (Vector512.Create(HalfQuietBit) | (Vector512.ShiftRightLogical(abs, 13) & Vector512.Create(0x3FF))));
        var magnitude = Vector512.ConditionalSelect(Vector512.LessThan(abs, Vector512.Create(SmallestNormalHalfBits)), subnormal,
            Vector512.ConditionalSelect(Vector512.LessThan(abs, Vector512.Create(HalfOverflowBits)), normal, special));
        return magnitude.AsUInt32() | sign;
    }

    // Constants of the fp16 algorithms (fp32 bit patterns unless said otherwise).
    private const int HalfExponentAt32 = 0x1F << 23;                 // fp16's exponent field, shifted to fp32's place
    private const int HalfToSingleRebias = (127 - 15) << 23;
    private const int SingleToHalfRebias = ((15 - 127) << 23) + 0xFFF; // rebias plus just under half an fp16 ulp
    private const int SingleQuietBit = 0x0040_0000;
    private const float SmallestNormalHalf = 6.103515625e-05f;       // 2^-14
    private const int SmallestNormalHalfBits = 113 << 23;            // 2^-14
    private const int HalfOverflowBits = (127 + 16) << 23;           // 2^16: from here on, always infinity
    private const int SingleInfinityBits = 0x7F80_0000;
    private const int OneHalfBits = 0x3F00_0000;                     // 0.5f
    private const int HalfInfinityBits = 0x7C00;
    private const int HalfQuietBit = 0x0200;

    // ---- Two vectors' worth of elements at a time, in any element type (shared with the kernels) ----

    /// <summary>Reads 16 elements at <paramref name="index"/> as fp32 (one 16-bit load widens to both halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<float> Lower, Vector256<float> Upper) Load2x256(void* source, ElementType type, long index)
    {
        if (type == ElementType.Float32)
        {
            float* p = (float*)source + index;
            return (Vector256.Load(p), Vector256.Load(p + Vector256<float>.Count));
        }
        var (lower, upper) = Vector256.Widen(Vector256.Load((ushort*)source + index));
        return type == ElementType.BFloat16
            ? (BFloat16ToSingle(lower), BFloat16ToSingle(upper))
            : (HalfToSingle(lower), HalfToSingle(upper));
    }

    /// <summary>Writes 16 fp32 values at <paramref name="index"/>, narrowed to <paramref name="type"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Store2x256(void* destination, ElementType type, long index, Vector256<float> lower, Vector256<float> upper)
    {
        if (type == ElementType.Float32)
        {
            float* p = (float*)destination + index;
            lower.Store(p);
            upper.Store(p + Vector256<float>.Count);
            return;
        }
        var narrowed = type == ElementType.BFloat16
            ? Vector256.Narrow(SingleToBFloat16(lower), SingleToBFloat16(upper))
            : Vector256.Narrow(SingleToHalf(lower), SingleToHalf(upper));
        narrowed.Store((ushort*)destination + index);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector512<float> Lower, Vector512<float> Upper) Load2x512(void* source, ElementType type, long index)
    {
        if (type == ElementType.Float32)
        {
            float* p = (float*)source + index;
            return (Vector512.Load(p), Vector512.Load(p + Vector512<float>.Count));
        }
        var (lower, upper) = Vector512.Widen(Vector512.Load((ushort*)source + index));
        return type == ElementType.BFloat16
            ? (BFloat16ToSingle(lower), BFloat16ToSingle(upper))
            : (HalfToSingle(lower), HalfToSingle(upper));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Store2x512(void* destination, ElementType type, long index, Vector512<float> lower, Vector512<float> upper)
    {
        if (type == ElementType.Float32)
        {
            float* p = (float*)destination + index;
            lower.Store(p);
            upper.Store(p + Vector512<float>.Count);
            return;
        }
        var narrowed = type == ElementType.BFloat16
            ? Vector512.Narrow(SingleToBFloat16(lower), SingleToBFloat16(upper))
            : Vector512.Narrow(SingleToHalf(lower), SingleToHalf(upper));
        narrowed.Store((ushort*)destination + index);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Load(void* source, ElementType type, long index) => type switch
    {
        ElementType.Float32 => ((float*)source)[index],
        ElementType.BFloat16 => BFloat16ToSingle(((ushort*)source)[index]),
        _ => HalfToSingle(((ushort*)source)[index]),
    };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Store(void* destination, ElementType type, long index, float value)
    {
        switch (type)
        {
            case ElementType.Float32: ((float*)destination)[index] = value; break;
            case ElementType.BFloat16: ((ushort*)destination)[index] = SingleToBFloat16(value); break;
            default: ((ushort*)destination)[index] = SingleToHalf(value); break;
        }
    }

    // ---- Spans ----

    /// <summary>Narrows fp32 values to bf16 or fp16 bits, at the given vector width.</summary>
    public static void Narrow(ReadOnlySpan<float> source, Span<ushort> destination, ElementType type, SimdWidth width = SimdWidth.Auto)
    {
        RequireSixteenBit(type);
        if (destination.Length != source.Length)
            throw new ArgumentException($"{source.Length} values but room for {destination.Length}.", nameof(destination));
        fixed (float* s = source)
        fixed (ushort* d = destination)
            Convert(s, ElementType.Float32, d, type, source.Length, Resolve(width));
    }

    /// <summary>Widens bf16 or fp16 bits to fp32 (exact), at the given vector width.</summary>
    public static void Widen(ReadOnlySpan<ushort> source, ElementType type, Span<float> destination, SimdWidth width = SimdWidth.Auto)
    {
        RequireSixteenBit(type);
        if (destination.Length != source.Length)
            throw new ArgumentException($"{source.Length} values but room for {destination.Length}.", nameof(destination));
        fixed (ushort* s = source)
        fixed (float* d = destination)
            Convert(s, type, d, ElementType.Float32, source.Length, Resolve(width));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a long loop: skip the unoptimized first tier
    private static void Convert(void* source, ElementType sourceType, void* destination, ElementType destinationType, long count, SimdWidth width)
    {
        long i = 0;
        if (width == SimdWidth.Vector512)
        {
            for (; i + 2 * Vector512<float>.Count <= count; i += 2 * Vector512<float>.Count)
            {
                var (lower, upper) = Load2x512(source, sourceType, i);
                Store2x512(destination, destinationType, i, lower, upper);
            }
        }
        else if (width == SimdWidth.Vector256)
        {
            for (; i + 2 * Vector256<float>.Count <= count; i += 2 * Vector256<float>.Count)
            {
                var (lower, upper) = Load2x256(source, sourceType, i);
                Store2x256(destination, destinationType, i, lower, upper);
            }
        }
        for (; i < count; i++) Store(destination, destinationType, i, Load(source, sourceType, i));
    }

    private static void RequireSixteenBit(ElementType type)
    {
        if (type is not (ElementType.BFloat16 or ElementType.Float16))
            throw new ArgumentOutOfRangeException(nameof(type), type, "bf16 or fp16 expected.");
    }
}
