namespace PatrickStar.Runtime;

/// <summary>An output path that cannot be written: the message names what it is for, the path and the fix.</summary>
public sealed class OutputPathException(string message) : Exception(message);

/// <summary>
/// Checks, before any work starts, that an output file or folder can be written, so that a run never fails at its
/// end for a read-only path. The checks leave nothing behind: a probe file is created and deleted at once, and a
/// folder that had to be created for the probe is removed again.
/// </summary>
public static class OutputPaths
{
    /// <summary>Throws <see cref="OutputPathException"/> unless <paramref name="path"/> can be created or overwritten.</summary>
    /// <param name="what">What the file is for, as the user named it (e.g. "--metrics file").</param>
    /// <param name="viaTempFile">The writer writes a temporary file beside it and renames it into place, so its folder must be writable too.</param>
    public static void EnsureWritableFile(string path, string what, bool viaTempFile = false)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
            throw new OutputPathException($"the {what} '{full}' is a folder; give a file path.");
        if (File.Exists(full) && !viaTempFile)
        {
            try
            {
                // Opening for writing without truncating proves the file can be replaced and changes nothing.
                using var _ = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                throw new OutputPathException($"the {what} '{full}' cannot be written ({Reason(e)}); make it writable or choose another path.");
            }
            return;
        }
        EnsureWritableDirectory(Path.GetDirectoryName(full)!, $"folder of the {what}");
    }

    /// <summary>
    /// Throws <see cref="OutputPathException"/> unless files can be created in <paramref name="path"/> (which may not
    /// exist yet: then its nearest existing ancestor must allow creating it).
    /// </summary>
    public static void EnsureWritableDirectory(string path, string what)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
            throw new OutputPathException($"the {what} '{full}' is a file, not a folder; give a folder path.");
        string existing = full;
        while (!Directory.Exists(existing))
        {
            string? parent = Path.GetDirectoryName(existing);
            if (parent is null) break;
            if (File.Exists(parent))
                throw new OutputPathException($"the {what} '{full}' cannot be created: '{parent}' is a file; choose another path.");
            existing = parent;
        }
        string probe = Path.Combine(existing, $".pstar-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            string where = existing == full ? "" : $" (its nearest existing folder '{existing}' does not allow creating it)";
            throw new OutputPathException($"the {what} '{full}' is not writable{where}: {Reason(e)}; make it writable or choose another path.");
        }
        finally
        {
            if (File.Exists(probe)) File.Delete(probe);
        }
    }

    private static string Reason(Exception e) => e is UnauthorizedAccessException ? "permission denied" : e.Message.TrimEnd('.');
}
