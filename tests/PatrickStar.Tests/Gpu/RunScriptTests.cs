using PatrickStar.Cli.Commands;
using Xunit;

namespace PatrickStar.Tests.Gpu;

/// <summary>gpu/run.sh --dry-run: every step in order with the right flags, commands the real pstar parses, and nothing written.</summary>
public class RunScriptTests
{
    private static readonly string[] Order =
        ["runtime", "app", "native", "native-out", "cuda-check", "device-tests", "estimate", "train-cpu", "train-plain", "train-chunked", "bench", "launch", "scale", "report", "details"];

    private static (Dictionary<string, string> Steps, List<string> Names, string Output) DryRun(string pack, string outDir)
    {
        var (code, stdout, stderr, _) = GpuScripts.Run("run.sh", TimeSpan.FromSeconds(30), "--dry-run", "--pack", pack, "--out", outDir);
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.Equal("", stderr);
        var steps = new Dictionary<string, string>();
        var names = new List<string>();
        foreach (var line in stdout.Split('\n').Where(l => l.StartsWith('[') && l.Contains("] (limit ")))
        {
            string name = line[1..line.IndexOf(']')];
            names.Add(name);
            steps[name] = line[(line.IndexOf(" s) ", StringComparison.Ordinal) + 4)..];
        }
        return (steps, names, stdout);
    }

    private const string Pstar = "dotnet /tmp/pstar-gpu/app/pstar.dll ";

    /// <summary>The pstar arguments of a step's command: after "dotnet .../pstar.dll ", up to the end or a shell separator.</summary>
    private static string[] PstarArguments(string command)
    {
        string rest = command[(command.IndexOf(Pstar, StringComparison.Ordinal) + Pstar.Length)..];
        return rest.Split(';')[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static string Flag(string[] args, string flag) => args[Array.IndexOf(args, flag) + 1];

    [Fact]
    public void EveryStepAppearsInOrderWithTheRightFlagsAndNothingIsWritten()
    {
        using var dir = new TempDir();
        string pack = Path.Combine(dir.Path, "no-pack-here"), outDir = Path.Combine(dir.Path, "out");
        var (steps, names, output) = DryRun(pack, outDir);

        Assert.Equal(Order, names);
        Assert.Contains("no package at " + pack, output);
        Assert.False(Directory.Exists(outDir), "a dry run must not create the output folder");
        Assert.False(Directory.Exists(pack));

        string repo = Path.GetDirectoryName(Path.GetDirectoryName(GpuScripts.Path("run.sh")))!;
        Assert.Contains($"tar -xJf {pack}/dotnet-runtime.tar.xz -C /tmp/pstar-gpu/dotnet", steps["runtime"]);
        Assert.Contains($"tar -xJf {pack}/app.tar.xz -C /tmp/pstar-gpu", steps["app"]);
        Assert.Equal($"bash {repo}/gpu/build-native.sh --src {pack}/native-src --ours {repo}/native/PatrickStarCuda --out {pack}/native-cache --python python3",
            steps["native"]);
        Assert.Contains("16777216", steps["native-out"]); // what comes back is at most 16 MiB a file: larger ones are stripped
        Assert.Contains($"{outDir}/native", steps["native-out"]);
        Assert.Equal("PSTAR_TEST_DEVICE=cuda dotnet /tmp/pstar-gpu/tests/PatrickStar.DeviceTests.dll -noColor", steps["device-tests"]);
        Assert.StartsWith("cuda-check", string.Join(" ", PstarArguments(steps["cuda-check"])));

        // The three trainings: one config, on the CPU, on cuda plain, on cuda with the chunk engine under a budget.
        var cpu = PstarArguments(steps["train-cpu"]);
        var plain = PstarArguments(steps["train-plain"]);
        var chunked = PstarArguments(steps["train-chunked"]);
        Assert.Equal("cpu", Flag(cpu, "--device"));
        Assert.Equal("cuda", Flag(plain, "--device"));
        Assert.Equal("cuda", Flag(chunked, "--device"));
        Assert.Equal("chunked", Flag(chunked, "--engine"));
        Assert.Equal("896MiB", Flag(chunked, "--device-memory"));
        Assert.DoesNotContain("--engine", plain);
        string[] Model(string[] a) => a.TakeWhile(t => t != "--device" && t != "--engine" && t != "--metrics").ToArray();
        Assert.Equal(Model(cpu), Model(plain));
        Assert.Equal(Model(cpu), Model(chunked));
        Assert.Equal("fp32", Flag(cpu, "--precision"));
        foreach (var (name, args) in new[] { ("cpu", cpu), ("plain", plain), ("chunked", chunked) })
            Assert.Equal($"/tmp/pstar-gpu/work/train-{name}.jsonl", Flag(args, "--metrics"));

        var scale = PstarArguments(steps["scale"]);
        Assert.Equal(("scale", "2GiB", "16GiB"), (Flag(scale, "--parts"), Flag(scale, "--device-memory"), Flag(scale, "--host-memory")));
        var bench = PstarArguments(steps["bench"]);
        Assert.Equal(("matmul,trainers", "bf16"), (Flag(bench, "--parts"), Flag(bench, "--precision")));
        Assert.Contains("command -v mpirun", steps["launch"]);
        Assert.Equal("cuda:0", Flag(PstarArguments(steps["launch"]), "--device"));
        Assert.Contains($"--out {outDir}/gpu-h200.md", steps["report"]);
    }

    [Fact]
    public void EveryPstarCommandParsesWithTheRealCommandLine()
    {
        using var dir = new TempDir();
        var (steps, _, _) = DryRun(Path.Combine(dir.Path, "pack"), Path.Combine(dir.Path, "out"));
        int checkedCommands = 0;
        foreach (var (name, command) in steps.Where(s => s.Value.Contains(Pstar)))
        {
            var args = PstarArguments(command);
            // launch runs a train command on each rank: that one is parsed too.
            var lines = args[0] == "launch" ? new[] { args, args[(Array.IndexOf(args, "--") + 1)..] } : new[] { args };
            foreach (var line in lines)
            {
                var parsed = PstarCommandLine.Parse(line);
                Assert.True(parsed.Errors.Count == 0, $"step {name}: pstar {string.Join(" ", line)}: {string.Join("; ", parsed.Errors.Select(e => e.Message))}");
                checkedCommands++;
            }
        }
        Assert.Equal(9, checkedCommands); // cuda-check, estimate, three trainings, bench, launch and its train, scale
    }

    [Fact]
    public void BadArgumentsAreRefusedInOneLine()
    {
        var (code, _, stderr, _) = GpuScripts.Run("run.sh", TimeSpan.FromSeconds(30), "--budget", "soon");
        Assert.Equal(2, code);
        Assert.Equal("run.sh: --budget must be whole seconds, not 'soon'.", stderr.Trim());
        (code, _, stderr, _) = GpuScripts.Run("run.sh", TimeSpan.FromSeconds(30), "--fast");
        Assert.Equal(2, code);
        Assert.Equal("run.sh: unknown argument '--fast'; see gpu/run.sh --help.", stderr.Trim());
    }
}
