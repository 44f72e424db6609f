using System.Text.Json;
using PatrickStar.Models.Estimation;
using PatrickStar.Profiling;
using PatrickStar.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace PatrickStar.Tests.Memory;

/// <summary>A chunked `pstar train` on a CPU device stays within its budgets: peak RSS against device + host budgets.</summary>
public class ChunkedRunMemoryTests
{
    private readonly ITestOutputHelper output;

    public ChunkedRunMemoryTests(ITestOutputHelper output)
    {
        this.output = output;
        TorchRuntime.EnsureLoaded();
    }

    // A GPT whose chunks fill most of both budgets: 2 chunks x 4 lists on the host, one parameter chunk plus the tied
    // embedding's gradient on the device. The vocabulary-sized embedding makes the large temporaries that used to stay resident.
    private const long DeviceBudget = DeviceMiB << 20, HostBudget = HostMiB << 20;
    private const long DeviceMiB = 150, HostMiB = 420;

    /// <summary>
    /// Peak RSS (VmHWM) of the whole run, in a child process, is at most 1.10 x (device + host budgets) plus the runtime's
    /// own resident memory (.NET and libtorch loaded, no model: ~155 MiB, reported by the child). Before the streamed build
    /// and the return of large freed blocks this run peaked well above it (the fp32 model beside its chunks, then the heap
    /// growing by one embedding gradient per step).
    /// </summary>
    [Fact]
    public void ChunkedRunPeakResidentMemoryStaysWithinTheBudgets()
    {
        using var dir = new TempDir();
        string metrics = Path.Combine(dir.Path, "metrics.jsonl");
        // These budgets are small beside the machine: the RSS-bound allocator mode is forced on, as a run near the machine's limit gets it.
        var forced = new Dictionary<string, string> { ["PSTAR_RETURN_LARGE_BLOCKS"] = "1" };
        var (exit, text) = DefaultRunMemoryTests.RunTrain(forced, "--engine", "chunked", "--layers", "2", "--hidden", "256", "--heads", "4", "--seq", "64",
            "--batch", "1", "--precision", "fp32", "--device-memory", $"{DeviceMiB}MiB", "--host-memory", $"{HostMiB}MiB", "--steps", "4",
            "--eval-interval", "0", "--metrics", metrics, "--plain-output");
        Assert.True(exit == 0, $"pstar train exited with {exit}:\n{text}");
        using var last = JsonDocument.Parse(File.ReadLines(metrics).Last());
        long peak = last.RootElement.GetProperty("peak_rss_bytes").GetInt64();
        long runtime = last.RootElement.GetProperty("runtime_baseline_rss_bytes").GetInt64();
        long hostHeld = last.RootElement.GetProperty("peak_host_bytes").GetInt64();

        long bound = (long)((DeviceBudget + HostBudget) * (1 + MachineMemoryCheck.AllocatorAllowance)) + runtime;
        string figures = $"peak RSS {Bytes.Format(peak)}; bound 1.10 x ({Bytes.Format(DeviceBudget)} device + {Bytes.Format(HostBudget)} host) + " +
                         $"{Bytes.Format(runtime)} runtime = {Bytes.Format(bound)}; host tier held {Bytes.Format(hostHeld)} at most";
        output.WriteLine(figures);
        Assert.True(hostHeld > HostBudget * 3 / 4, $"the model data must fill most of the host budget for the bound to mean anything: {figures}");
        Assert.True(peak <= bound, figures);
    }
}
