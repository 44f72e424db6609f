using System.Text.Json;
using System.Text.Json.Nodes;

namespace PatrickStar.Config;

/// <summary>Keys whose JSON shape does not map one to one onto a property: the precision flags and activation_checkpointing.</summary>
internal static class PrecisionKeys
{
    /// <summary>bf16.enabled / fp16.enabled: each selects its precision; both true is an error, since one run has one precision.</summary>
    public static Field Flag(string key, Precision mine, Precision other, string otherKey, string meaning) =>
        new(key, "bool", c => ConfigText.Show(IsFamily(c.Precision, mine)), meaning, (state, value, c) =>
        {
            if (!state.ReadBool(value, key, out bool v)) return;
            if (v && IsFamily(c.Precision, other))
                state.Error(key, $"{key} and {otherKey} are both true, but a run has one precision; set one of them to false.");
            else if (v && !IsFamily(c.Precision, mine)) c.Precision = mine;
            else if (!v && IsFamily(c.Precision, mine)) c.Precision = Precision.Fp32;
        }) { Value = c => JsonValue.Create(IsFamily(c.Precision, mine)) };

    /// <summary>Whether a precision is selected by a flag: bf16.enabled covers bf16 with fp32 compute too.</summary>
    private static bool IsFamily(Precision p, Precision flag) =>
        p == flag || (flag == Precision.Bf16 && p == Precision.Bf16Fp32);

    /// <summary>
    /// bf16.fp32_compute: refines bf16.enabled (bf16 parameters, fp32 activations and matmuls: <see cref="Precision.Bf16Fp32"/>).
    /// Only recorded here: keys may come in any order, so <see cref="ResolveFp32Compute"/> applies it after all are read.
    /// </summary>
    public static Field Fp32ComputeFlag() =>
        new("bf16.fp32_compute", "bool", c => ConfigText.Show(c.Precision == Precision.Bf16Fp32),
            "With bf16.enabled: bf16 parameters and gradients in memory, fp32 activations and matmuls (14 B/param at fp32 speed on CPUs without fast bf16).",
            (state, value, c) =>
            {
                if (state.ReadBool(value, "bf16.fp32_compute", out bool v)) state.Fp32Compute = v;
            }) { Value = c => JsonValue.Create(c.Precision == Precision.Bf16Fp32) };

    /// <summary>Turns bf16 into bf16-with-fp32-compute when bf16.fp32_compute is true, and refuses the flag without bf16.</summary>
    public static void ResolveFp32Compute(ConfigParseState state, TrainingConfig c)
    {
        if (state.Fp32Compute is not bool v || state.FailedKeys.Contains("bf16.enabled")) return;
        if (v && c.Precision is Precision.Bf16 or Precision.Bf16Fp32) c.Precision = Precision.Bf16Fp32;
        else if (v)
            state.Error("bf16.fp32_compute", "bf16.fp32_compute is true but bf16.enabled is not: fp32 compute is a variant of bf16 " +
                                             "(bf16 parameters, fp32 activations); add \"bf16\": { \"enabled\": true } or remove bf16.fp32_compute.");
        else if (c.Precision == Precision.Bf16Fp32) c.Precision = Precision.Bf16;
    }

    /// <summary>
    /// Ours is a switch; DeepSpeed's is an object of its own options (partition_activations, cpu_checkpointing, ...), which
    /// is taken as a warning rather than an error, so that a DeepSpeed file loads.
    /// </summary>
    public static Field ActivationCheckpointing()
    {
        const string key = "activation_checkpointing";
        return new(key, "bool", c => ConfigText.Show(c.ActivationCheckpointing),
            "Recompute each transformer block's activations in backward instead of keeping them (less memory, one more forward).",
            (state, value, c) =>
            {
                if (value.ValueKind == JsonValueKind.Object)
                    state.Warn(key, $"{key} is DeepSpeed's object of options, which are not supported and are ignored; "
                        + $"write \"{key}\": true to recompute each block's activations in backward.");
                else if (state.ReadBool(value, key, out bool v)) c.ActivationCheckpointing = v;
            }) { Value = c => JsonValue.Create(c.ActivationCheckpointing) };
    }
}
