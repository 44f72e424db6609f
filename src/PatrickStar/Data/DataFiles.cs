namespace PatrickStar.Data;

/// <summary>Finds the data files behind the paths a user gave.</summary>
public static class DataFiles
{
    /// <summary>The extensions read from a folder; a file named directly is read as text unless its extension says otherwise.</summary>
    public static readonly string[] Extensions = [".txt", ".jsonl", ".parquet", ".bin"];

    public static IReadOnlyList<string> Resolve(IReadOnlyList<string> paths, DataOptions? options = null)
    {
        options ??= new DataOptions();
        if (paths.Count == 0) throw new DataException("no data files were given.");
        var files = new List<string>();
        foreach (var path in paths)
        {
            if (File.Exists(path)) files.Add(path);
            else if (Directory.Exists(path))
            {
                var all = Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
                var data = all.Where(IsDataFile).ToList();
                if (data.Count == 0)
                    throw new DataException($"directory '{path}' contains no data files ({string.Join(", ", Extensions.Select(e => "*" + e))}); " +
                                            "point --data at data files or a folder that has some.");
                var skipped = all.Except(data).Select(f => Path.GetRelativePath(path, f)).ToList();
                if (skipped.Count > 0)
                    options.WarnOf($"skipped {skipped.Count} file(s) in '{path}' that are not {string.Join(", ", Extensions)}: " +
                                   string.Join(", ", skipped.Take(10)) + (skipped.Count > 10 ? $", and {skipped.Count - 10} more" : "") + ".");
                files.AddRange(data);
            }
            else throw new DataException($"data file '{path}' does not exist (working directory: {Environment.CurrentDirectory}).");
        }
        return files;
    }

    private static bool IsDataFile(string file) => Extensions.Contains(Path.GetExtension(file), StringComparer.OrdinalIgnoreCase);

    public static bool Is(string file, string extension) => string.Equals(Path.GetExtension(file), extension, StringComparison.OrdinalIgnoreCase);
}
