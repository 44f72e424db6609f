namespace PatrickStar.Data;

/// <summary>How data files are read: the jsonl/parquet text field, the .bin token width, and where token caches go.</summary>
public sealed record DataOptions
{
    public const string DefaultTextField = "text";
    public static readonly string[] BinDTypes = ["uint16", "uint32"];

    /// <summary>The jsonl field or parquet column that holds each document's text.</summary>
    public string TextField { get; init; } = DefaultTextField;

    /// <summary>Width of the token ids in nanoGPT-style .bin files: uint16 or uint32.</summary>
    public string BinDType { get; init; } = "uint16";

    /// <summary>The cache folder (token caches go in its tokens/ subfolder); null: $XDG_CACHE_HOME/pstar or ~/.cache/pstar.</summary>
    public string? CacheDir { get; init; }

    /// <summary>Receives warnings (files skipped in a folder); null: standard error.</summary>
    public Action<string>? Warn { get; init; }

    public static string DefaultCacheDir()
    {
        string home = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(home, "pstar");
    }

    public string ResolvedCacheDir => CacheDir ?? DefaultCacheDir();

    public void WarnOf(string message)
    {
        if (Warn is not null) Warn(message);
        else Console.Error.WriteLine($"warning: {message}");
    }
}
