using PatrickStar.Tests.Cli;
using Xunit;

namespace PatrickStar.Tests.Config;

/// <summary>The flags and --set of `pstar train` / `pstar estimate` and `pstar config --check`, in-process.</summary>
public sealed class ConfigCliTests
{
    [Fact]
    public void Train_BadSetValue_IsOneLineWithKeyAndValue()
    {
        var (code, _, err) = CliTests.Pstar("train", "--set", "steps=abc", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("--set steps=abc: steps is \"abc\", but it must be an integer.", err);
    }

    [Fact]
    public void Train_BadFlagValues_NameTheFlagTheKeyAndTheValue_AllAtOnce()
    {
        var (code, _, err) = CliTests.Pstar("train", "--device-memory", "2XB", "--set", "optimizer.params.lrr=1", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("command line: 2 problems:", err);
        Assert.Contains("--device-memory 2XB: device_memory is \"2XB\", but it must be an integer or a size such as \"2GiB\"", err);
        Assert.Contains("--set optimizer.params.lrr=1: optimizer.params.lrr is not a known key; did you mean 'lr'?", err);
    }

    [Fact]
    public void Train_FlagAndSetOfOneKey_AreRefused()
    {
        var (code, _, err) = CliTests.Pstar("train", "--steps", "3", "--set", "steps=4", "--plain-output");
        Assert.Equal(1, code);
        Assert.Contains("steps is set more than once on the command line (--steps 3, --set steps=4); keep one.", err);
    }

    [Fact]
    public void Estimate_SetReachesTheEstimate_AndFlagsCheckRanges()
    {
        var (code, output, _) = CliTests.Pstar("estimate", "--model", "gpt2-tiny", "--set", "train_micro_batch_size_per_gpu=3", "--seq", "32",
            "--precision", "bf16", "--json");
        Assert.True(code is 0 or 3, output);
        Assert.Contains("\"micro_batch\": 3", output);
        Assert.Contains("\"precision\": \"bf16\"", output);

        var (bad, _, err) = CliTests.Pstar("estimate", "--batch", "0");
        Assert.Equal(1, bad);
        Assert.Contains("train_micro_batch_size_per_gpu is 0, but it must be >= 1.", err);
    }

    [Fact]
    public void ConfigCheck_DeepSpeedExample_IsValidWithWarnings()
    {
        string path = DeepSpeedConfigTests.Example("ds_bf16_warmupcosine.json");
        var (code, output, err) = CliTests.Pstar("config", "--check", path);
        Assert.Equal(0, code);
        Assert.Contains("is valid", output);
        Assert.Contains("warning: ", err);
        Assert.Contains("zero_optimization.overlap_comm is a DeepSpeed tuning knob", err);

        var (wrongRanks, _, message) = CliTests.Pstar("config", "--check", path, "--ranks", "2");
        Assert.Equal(1, wrongRanks);
        Assert.Contains("* ranks (2) = 64", message);
    }
}
