using PatrickStar.Config;
using PatrickStar.Models;
using PatrickStar.Models.Estimation;
using Xunit;

namespace PatrickStar.Tests.Estimation;

/// <summary>The start-up refusal of a run the machine cannot hold: figures in, one line with the figures out.</summary>
public class MachineMemoryCheckTests
{
    private const long MiB = 1L << 20;

    /// <summary>gpt2-tiny under the chunk engine with 256 MiB device + 1 GiB host budgets (the tiers need far less).</summary>
    private static MemoryEstimate Estimate()
    {
        var config = new TrainingConfig { Engine = "chunked", Model = new ModelSection { Preset = "gpt2-tiny" }, MicroBatchSize = 1, SequenceLength = 32 };
        return MemoryEstimator.Estimate(MemoryEstimator.RequestFor(config, ModelFamilies.Resolve(config.Model), 256 * MiB, 1024 * MiB));
    }

    [Fact]
    public void RefusesOnlyWhatTheTiersAndRuntimeNeedBeyondWhatIsAvailable()
    {
        var estimate = Estimate();
        long tiers = estimate.Tiers.Sum(t => Math.Min(t.Needed, t.Available!.Value));
        long need = (long)(tiers * 1.10) + 150 * MiB;

        // Budgets (1.25 GiB) above what is available do not matter: what the tiers will hold does.
        Assert.Null(MachineMemoryCheck.Shortfall(estimate, cpuDevice: true, 150 * MiB, residentNow: 200 * MiB, memAvailable: need - 200 * MiB, cgroupRoom: null));

        string? refusal = MachineMemoryCheck.Shortfall(estimate, cpuDevice: true, 150 * MiB, 200 * MiB, memAvailable: need - 200 * MiB - 1, cgroupRoom: null);
        Assert.NotNull(refusal);
        Assert.Contains($"{need:N0} bytes", refusal);
        Assert.Contains("MemAvailable", refusal);
        Assert.Contains("--host-memory", refusal);
        Assert.DoesNotContain("\n", refusal);

        // A cgroup limit tighter than MemAvailable is the one that counts.
        string? limited = MachineMemoryCheck.Shortfall(estimate, cpuDevice: true, 150 * MiB, 200 * MiB, memAvailable: 64L << 30, cgroupRoom: 1 * MiB);
        Assert.Contains("cgroup", limited);

        // On a GPU the device tier is not host memory.
        long hostOnly = (long)(estimate.Tiers.Single(t => t.Tier == "host").Needed * 1.10) + 150 * MiB;
        Assert.Null(MachineMemoryCheck.Shortfall(estimate, cpuDevice: false, 150 * MiB, 200 * MiB, memAvailable: hostOnly - 200 * MiB, cgroupRoom: null));
    }
}
