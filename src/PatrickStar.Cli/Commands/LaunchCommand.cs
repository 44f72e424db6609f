using System.Collections;
using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using PatrickStar.Config;
using PatrickStar.Distributed;
using PatrickStar.Runtime;

namespace PatrickStar.Cli.Commands;

/// <summary>
/// `pstar launch -n N -- train ...`: starts N ranks of this same pstar program under Open MPI's mpirun,
/// with the options this kind of machine needs; and `pstar comm-check`, which verifies every collective
/// of an MPI installation against a serial reference.
/// </summary>
public static class LaunchCommand
{
    public const string InstallHint = "apt-get install -y openmpi-bin libopenmpi-dev";

    /// <summary>Keeps glibc from mmapping (and page-faulting) fresh temporaries for each of MPI's large reductions: 5-20x faster on VMs.</summary>
    public const string MallocTunables = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296";

    public static Command Build()
    {
        var ranks = new Option<int>("--np", "-n") { Description = "Number of ranks (processes) to start.", Required = true };
        var hostfile = new Option<FileInfo?>("--hostfile") { Description = "Open MPI hostfile for several machines (adds TCP transport)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the mpirun command line instead of running it." };
        var program = new Argument<string[]>("command") { Description = "The pstar command each rank runs, after `--` (e.g. -- train --steps 50).", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("launch", "Run a pstar command on several processes with mpirun (data parallel). With --device cuda, rank r of each machine uses " +
                                            "cuda:(its local rank)." + Examples.Format(
                                                "pstar launch -n 2 -- train --engine chunked --steps 50",
                                                "pstar launch -n 4 -- train --device cuda          # one GPU per rank",
                                                "pstar launch -n 8 --hostfile hosts -- train ...",
                                                "pstar launch -n 2 --dry-run -- train              # print the mpirun command line"));
        command.Options.Add(ranks);
        command.Options.Add(hostfile);
        command.Options.Add(dryRun);
        command.Arguments.Add(program);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            int n = r.GetValue(ranks);
            if (n < 1) throw new ArgumentException($"--np must be at least 1, not {n}.");
            var args = r.GetValue(program) ?? Array.Empty<string>();
            if (args.Length == 0)
                throw new ArgumentException("nothing to launch: give the pstar command after `--`, e.g. `pstar launch -n 2 -- train --steps 50`.");
            // The ranks' command line is checked here, once, instead of by every rank after mpirun has started them all.
            var parsed = PstarCommandLine.Parse(args);
            if (parsed.Errors.Count > 0) return PstarCommandLine.ReportErrors(parsed);
            var hosts = r.GetValue(hostfile);
            if (hosts is not null && !hosts.Exists) throw new FileNotFoundException($"the hostfile '{hosts.FullName}' does not exist.");
            string? mpirun = FindOnPath("mpirun");
            var line = MpirunArguments(n, hosts?.FullName, SelfCommand().Concat(args).ToList(), EnvironmentVariables(), IsRoot(), Environment.ProcessorCount);
            if (r.GetValue(dryRun))
            {
                Console.WriteLine(string.Join(" ", new[] { mpirun ?? "mpirun" }.Concat(line).Select(Quote)));
                return 0;
            }
            if (mpirun is null)
            {
                Console.Error.WriteLine($"error: mpirun was not found on PATH. Install Open MPI with `{InstallHint}` and run again.");
                return CommandErrors.UserError;
            }
            var (file, prefix) = JobSignals.InOwnSession(mpirun);
            var start = new ProcessStartInfo(file) { UseShellExecute = false };
            foreach (var a in prefix.Concat(line)) start.ArgumentList.Add(a);
            using var process = Process.Start(start) ?? throw new InvalidOperationException("mpirun could not be started.");
            using var signals = new JobSignals(process);
            process.WaitForExit();
            if (signals.Forced) return process.ExitCode != 0 ? process.ExitCode : 128 + signals.FirstSignal;
            return process.ExitCode;
        }));
        return command;
    }

    /// <summary>mpirun's arguments (without "mpirun") for N ranks running <paramref name="program"/>.</summary>
    public static IReadOnlyList<string> MpirunArguments(int ranks, string? hostfile, IReadOnlyList<string> program,
        IReadOnlyDictionary<string, string> environment, bool isRoot, int cores)
    {
        var a = new List<string> { "-n", ranks.ToString() };
        if (isRoot) a.Add("--allow-run-as-root");
        if (hostfile is not null) a.AddRange(new[] { "--hostfile", hostfile, "--mca", "btl", "self,vader,tcp" });
        else if (ranks > cores) a.Add("--oversubscribe");
        // Containers often forbid the ptrace-based single-copy (CMA) path of the shared-memory transport.
        a.AddRange(new[] { "--mca", "btl_vader_single_copy_mechanism", "none" });
        a.AddRange(new[] { "-x", "TERM=dumb" }); // no escape codes from .NET in the merged output
        a.AddRange(new[] { "-x", environment.TryGetValue("GLIBC_TUNABLES", out var t) ? $"GLIBC_TUNABLES={t}" : $"GLIBC_TUNABLES={MallocTunables}" });
        foreach (var name in environment.Keys.Where(k => k.StartsWith("DOTNET_", StringComparison.Ordinal) || k.StartsWith("PSTAR_", StringComparison.Ordinal)
                                                         || k == "LD_LIBRARY_PATH" || (hostfile is not null && k == "PATH")).Order(StringComparer.Ordinal))
            a.AddRange(new[] { "-x", name });
        a.AddRange(program);
        return a;
    }

    /// <summary>How to start this same pstar again: the apphost, or `dotnet pstar.dll` when run through dotnet (or a test host).</summary>
    public static IReadOnlyList<string> SelfCommand()
    {
        string? exe = Environment.ProcessPath;
        if (exe is not null && Path.GetFileNameWithoutExtension(exe) == "pstar") return new[] { exe };
        string dll = typeof(LaunchCommand).Assembly.Location;
        string dotnet = exe is not null && Path.GetFileNameWithoutExtension(exe) == "dotnet" ? exe : FindOnPath("dotnet") ?? "dotnet";
        return new[] { dotnet, dll };
    }

    public static string? FindOnPath(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUserId();

    private static bool IsRoot()
    {
        try
        {
            return OperatingSystem.IsLinux() && GetEffectiveUserId() == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return Environment.UserName == "root";
        }
    }

    private static Dictionary<string, string> EnvironmentVariables() =>
        Environment.GetEnvironmentVariables().Cast<DictionaryEntry>().ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");

    private static string Quote(string s) =>
        s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "-_./=:,+@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>`pstar comm-check`: every collective on fp32/bf16/fp16 against a serial reference; prints `rank R/N: ok`.</summary>
    public static Command BuildCommCheck()
    {
        var failRank = new Option<int?>("--fail-rank") { Description = "Make this rank fail on purpose after start-up (checks that a failure stops the whole job)." };
        var bench = new Option<string?>("--bench") { Description = "Also time the fp32 collectives on a buffer of this size (e.g. 64MiB; with 2+ ranks); rank 0 prints the times." };
        var command = new Command("comm-check", "Check the collectives of this MPI installation (run it under `pstar launch -n 2 -- comm-check`); " +
                                                "each rank prints `rank R/N: ok` or what failed." +
                                                Examples.Format("pstar launch -n 2 -- comm-check", "pstar launch -n 2 -- comm-check --bench 256MiB"));
        command.Options.Add(failRank);
        command.Options.Add(bench);
        command.SetAction(r => CommandErrors.Run(() =>
        {
            long? benchBytes = r.GetValue(bench) is string b ? ByteSize.Parse(b, "--bench") : null;
            TorchRuntime.EnsureLoaded();
            using var comm = Communicators.Create();
            string who = $"rank {comm.Rank}/{comm.Size}";
            try
            {
                if (r.GetValue(failRank) is int f)
                {
                    if (f < 0 || f >= comm.Size) throw new ArgumentException($"--fail-rank {f} is not a rank of this job (0..{comm.Size - 1}).");
                    comm.Barrier();
                    if (comm.Rank == f) throw new InvalidOperationException($"rank {f} failed on purpose (--fail-rank {f})");
                }
                var failures = CommCheck.Run(comm).ToList();
                int checks = CommCheck.CheckCount;
                if (comm is MpiCommunicator mpi)
                {
                    // Again with tiny per-call counts, to exercise the splitting that 2^31-element buffers need.
                    int saved = mpi.MaxElementsPerCall;
                    mpi.MaxElementsPerCall = 5;
                    failures.AddRange(CommCheck.Run(comm, new long[] { 1, 7, 23 }).Select(x => $"{x} (split into calls of 5 elements)"));
                    checks += CommCheck.CheckCount;
                    mpi.MaxElementsPerCall = saved;
                }
                foreach (var failure in failures) Console.Error.WriteLine($"{who}: FAILED: {failure}");
                if (failures.Count > 0) return CommandErrors.UserError;
                Console.WriteLine($"{who}: ok ({checks} checks, {comm.Backend})");
                if (benchBytes is long bytes && comm.Size > 1)
                {
                    var times = CommCheck.Measure(comm, bytes);
                    if (comm.Rank == 0)
                        foreach (var (name, seconds) in times)
                            Console.WriteLine($"{name,-14} {bytes / 1048576.0,8:0.#} MiB fp32 x {comm.Size} ranks: {seconds * 1e3,8:0.00} ms  {bytes / seconds / 1e9,6:0.00} GB/s");
                }
                return 0;
            }
            catch (Exception e) when (e is not CommunicatorAbortedException)
            {
                Console.Error.WriteLine($"{who}: FAILED: {e.Message}");
                if (comm.Size > 1) comm.Abort(3, e.Message); // the other ranks wait in a collective: stop them
                return CommandErrors.UserError;
            }
        }));
        return command;
    }
}
