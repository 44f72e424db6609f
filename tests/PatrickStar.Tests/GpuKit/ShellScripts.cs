using Xunit;
using System.Diagnostics;

namespace PatrickStar.Tests.GpuKit;

/// <summary>Runs the repository's gpu/ scripts (bash) from tests.</summary>
internal static class ShellScripts
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string InRepo(string relative) => Path.Combine(RepoRoot, relative);

    /// <summary>Runs a program to completion (30 s at most); its exit code and both outputs.</summary>
    public static (int Exit, string Out, string Err) Run(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(30_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} ran past 30 s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Whether a program is on PATH.</summary>
    public static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PatrickStar.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no PatrickStar.sln above {AppContext.BaseDirectory}");
    }
}

/// <summary>A fact that needs the TorchSharp git mirror (absent in CI): skipped, with the reason, where it is missing.</summary>
public sealed class TorchSharpMirrorFactAttribute : FactAttribute
{
    public const string MirrorPath = "/work/.mirror/dotnet+TorchSharp/repo";

    public TorchSharpMirrorFactAttribute()
    {
        if (!Directory.Exists(MirrorPath)) Skip = $"no TorchSharp git mirror at {MirrorPath}";
    }
}

/// <summary>A fact that needs a program on PATH (gcc to build a fake native library): skipped where it is missing.</summary>
public sealed class ProgramFactAttribute : FactAttribute
{
    public ProgramFactAttribute(string program)
    {
        if (!ShellScripts.OnPath(program)) Skip = $"{program} is not on PATH";
    }
}
