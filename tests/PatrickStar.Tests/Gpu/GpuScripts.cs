using System.Diagnostics;
using PatrickStar.Tests.Layers;

namespace PatrickStar.Tests.Gpu;

/// <summary>Runs the scripts under gpu/ with bash, as a person would.</summary>
internal static class GpuScripts
{
    public static string Path(string name) => ReadmeExampleTests.RepositoryFile(System.IO.Path.Combine("gpu", name));

    public static (int Code, string Out, string Err, TimeSpan Took) Run(string script, TimeSpan limit, params string[] args)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path(script));
        foreach (var a in args) start.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(" ", args)} ran past {limit.TotalSeconds:0} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result, clock.Elapsed);
    }
}
