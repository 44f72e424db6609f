using PatrickStar.Distributed;
using Xunit;

namespace PatrickStar.Tests.Distributed;

/// <summary>Several GPUs on one machine: rank r of a job takes cuda:(local rank r), checked with a fake device count.</summary>
public class LocalRankDeviceTests
{
    private static Func<string, string?> Env(params (string Name, string Value)[] vars) =>
        name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(3)]
    public void EachRankOfAJobTakesTheGpuOfItsLocalRank(int local)
    {
        var env = Env(("OMPI_COMM_WORLD_LOCAL_RANK", $"{local}"), ("OMPI_COMM_WORLD_RANK", $"{local + 4}"));
        Assert.Equal($"cuda:{local}", LocalRankDevice.For("cuda", 8, env, () => 4));
        Assert.Equal($"cuda:{local}", LocalRankDevice.For("auto", 8, env, () => 4));
    }

    [Fact]
    public void MpichsVariableIsReadWhenOpenMpisIsAbsent() =>
        Assert.Equal("cuda:2", LocalRankDevice.For("cuda", 4, Env(("MPI_LOCALRANKID", "2")), () => 4));

    [Fact]
    public void CpuExplicitDevicesAndSingleProcessesAreLeftAlone()
    {
        var env = Env(("OMPI_COMM_WORLD_LOCAL_RANK", "1"));
        Assert.Equal("cpu", LocalRankDevice.For("cpu", 2, env, () => 2));
        Assert.Equal("cuda:0", LocalRankDevice.For("cuda:0", 2, env, () => 2));
        Assert.Equal("cuda", LocalRankDevice.For("cuda", 1, env, () => 2));
        Assert.Equal("cuda", LocalRankDevice.For("cuda", 2, Env(), () => 2));
        Assert.Equal("auto", LocalRankDevice.For("auto", 2, env, () => 0)); // no GPU: auto stays on the CPU
    }

    [Fact]
    public void TooFewGpusForTheRanksOnAMachineIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => LocalRankDevice.For("cuda", 4, Env(("OMPI_COMM_WORLD_LOCAL_RANK", "2")), () => 2));
        Assert.Contains("local rank 2", e.Message);
        Assert.Contains("start at most 2 rank(s) per machine", e.Message);
    }
}
