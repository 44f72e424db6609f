using PatrickStar.Runtime;
using Xunit;

namespace PatrickStar.Tests.Runtime;

/// <summary>The start-up writability checks: they refuse what cannot be written and leave nothing behind.</summary>
public class OutputPathsTests
{
    [Fact]
    public void ChecksCreateNothingAndChangeNothing()
    {
        using var dir = new TempDir();
        string nested = Path.Combine(dir.Path, "a", "b");
        OutputPaths.EnsureWritableDirectory(nested, "--out folder");
        OutputPaths.EnsureWritableFile(Path.Combine(nested, "m.jsonl"), "--metrics file");
        string existing = dir.File("keep.txt", "content");
        OutputPaths.EnsureWritableFile(existing, "--metrics file");
        OutputPaths.EnsureWritableFile(existing, "--profile file", viaTempFile: true);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "a")));
        Assert.Equal("content", File.ReadAllText(existing));
        Assert.Equal(new[] { existing }, Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void UnwritablePlacesAreRefusedNamingThePath()
    {
        using var dir = new TempDir();
        string file = dir.File("f", "x");
        Assert.Contains($"'{file}' is a file, not a folder", Assert.Throws<OutputPathException>(() => OutputPaths.EnsureWritableDirectory(file, "--out folder")).Message);
        Assert.Contains($"'{dir.Path}' is a folder", Assert.Throws<OutputPathException>(() => OutputPaths.EnsureWritableFile(dir.Path, "--metrics file")).Message);
        Assert.Contains($"'{file}' is a file", Assert.Throws<OutputPathException>(() => OutputPaths.EnsureWritableFile(Path.Combine(file, "m.jsonl"), "--metrics file")).Message);
        // A read-only folder; root may write anyway, so this part runs only for other users.
        string readOnly = Path.Combine(dir.Path, "ro");
        Directory.CreateDirectory(readOnly);
        File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            if (Environment.UserName != "root")
                Assert.Contains("is not writable", Assert.Throws<OutputPathException>(() => OutputPaths.EnsureWritableFile(Path.Combine(readOnly, "p.json"), "--profile file")).Message);
        }
        finally
        {
            File.SetUnixFileMode(readOnly, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }
}
