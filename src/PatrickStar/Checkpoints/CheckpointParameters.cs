using System.Text.Json;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace PatrickStar.Checkpoints;

/// <summary>Model sizes recorded in a checkpoint manifest.</summary>
public sealed record CheckpointModelSizes(int VocabSize, int ContextLength, int Layers, int Hidden, int Heads);

/// <summary>
/// The fp32 master parameters of a training checkpoint, read through its manifest, tensor by tensor.
/// The contract read here: a directory with manifest.json
/// <c>{"format": "patrickstar-checkpoint", "version": 2, "model": {...}, "files": [...], "file_checks": [...]}</c> (see <see cref="CheckpointManifest"/>)
/// whose safetensors files hold <c>param/&lt;parameter name&gt;</c> (each parameter in exactly one file) plus
/// optimizer state (<c>exp_avg/…</c>, <c>exp_avg_sq/…</c>), which is ignored here.
/// </summary>
public sealed class CheckpointParameters : IDisposable
{
    public const string Format = "patrickstar-checkpoint";
        public const string ManifestName = "manifest.json";
    public const string ParamPrefix = "param/";

    private readonly List<SafetensorsReader> readers;
    private readonly Dictionary<string, (SafetensorsReader Reader, SafetensorsEntry Entry)> parameters;

    public string Directory { get; }
    public CheckpointModelSizes Model { get; }

    /// <summary>Parameter names (without the param/ prefix) in the order the files list them.</summary>
    public IReadOnlyList<string> Names { get; }

    private CheckpointParameters(string directory, CheckpointModelSizes model, List<SafetensorsReader> readers,
        Dictionary<string, (SafetensorsReader, SafetensorsEntry)> parameters, List<string> names)
    {
        Directory = directory;
        Model = model;
        this.readers = readers;
        this.parameters = parameters;
        Names = names;
    }

    private static readonly Regex StepDir = new(@"^step-(\d{1,18})$", RegexOptions.CultureInvariant);

    /// <summary>
    /// The checkpoint directory <paramref name="path"/> names: the directory itself when it has a manifest, or
    /// else its latest <c>step-NNNNNNNN</c> subdirectory that has one.
    /// </summary>
    public static string ResolveDirectory(string path)
    {
        if (!System.IO.Directory.Exists(path))
            throw new DirectoryNotFoundException($"checkpoint directory '{path}' does not exist (working directory: {Environment.CurrentDirectory}).");
        if (File.Exists(System.IO.Path.Combine(path, ManifestName))) return path;
        var latest = System.IO.Directory.EnumerateDirectories(path)
            .Select(d => (Dir: d, Match: StepDir.Match(System.IO.Path.GetFileName(d))))
            .Where(x => x.Match.Success && File.Exists(System.IO.Path.Combine(x.Dir, ManifestName)))
            .OrderByDescending(x => long.Parse(x.Match.Groups[1].Value))
            .Select(x => x.Dir)
            .FirstOrDefault();
        return latest ?? throw new ModelFileException(
            $"'{path}' is not a checkpoint: it has no {ManifestName} and no step-NNNNNNNN subdirectory with one. " +
            "Point at a checkpoint directory or at the folder training saved its checkpoints in.");
    }

    /// <summary>Opens a checkpoint (or the latest one under a parent directory), validates its manifest and verifies its files.</summary>
    public static CheckpointParameters Open(string path)
    {
        string dir = ResolveDirectory(path);
        var manifest = CheckpointManifest.Read(dir);
        manifest.Verify(); // every load checks sizes and SHA-256 before trusting a byte
        var (model, files, manifestPath) = (manifest.Model, manifest.Files, manifest.Path);

        var readers = new List<SafetensorsReader>();
        try
        {
            var parameters = new Dictionary<string, (SafetensorsReader, SafetensorsEntry)>(StringComparer.Ordinal);
            var names = new List<string>();
            foreach (string file in files)
            {
                string full = System.IO.Path.Combine(dir, file);
                if (!File.Exists(full))
                    throw new ModelFileException($"checkpoint manifest '{manifestPath}' lists '{file}', which does not exist in '{dir}'. The checkpoint is incomplete.");
                var reader = SafetensorsReader.Open(full);
                readers.Add(reader);
                foreach (var e in reader.Entries.Where(e => e.Name.StartsWith(ParamPrefix, StringComparison.Ordinal)))
                {
                    string name = e.Name[ParamPrefix.Length..];
                    if (parameters.TryGetValue(name, out var other))
                        throw new ModelFileException($"checkpoint '{dir}': parameter '{name}' is in both '{other.Item1.Path}' and '{full}'; " +
                                                     "every parameter must be in exactly one file.");
                    if (e.DType != ScalarType.Float32)
                        throw new ModelFileException($"checkpoint '{dir}': '{e.Name}' in '{full}' is {SafetensorsDTypes.Name(e.DType)}; master weights must be F32.");
                    parameters[name] = (reader, e);
                    names.Add(name);
                }
            }
            if (names.Count == 0)
                throw new ModelFileException($"checkpoint '{dir}' holds no '{ParamPrefix}…' tensors in {string.Join(", ", files)}.");
            return new CheckpointParameters(dir, model, readers, parameters, names);
        }
        catch
        {
            foreach (var r in readers) r.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => parameters.ContainsKey(name);

    public long[] Shape(string name) => Get(name).Entry.Shape;

    /// <summary>Reads one parameter's fp32 master weights into a new CPU tensor.</summary>
    public Tensor Read(string name)
    {
        var (reader, entry) = Get(name);
        return reader.Read(entry.Name);
    }

    /// <summary>Reads one parameter into a destination of the same shape (dtype converted).</summary>
    public void ReadInto(string name, Tensor destination)
    {
        var (reader, entry) = Get(name);
        reader.ReadInto(entry.Name, destination);
    }

    /// <summary>Every parameter as a lazily loaded source (one tensor in memory at a time when streamed).</summary>
    public IEnumerable<TensorSource> Sources() =>
        Names.Select(n => new TensorSource(n, ScalarType.Float32, Shape(n), () => Read(n)));

    private (SafetensorsReader Reader, SafetensorsEntry Entry) Get(string name) =>
        parameters.TryGetValue(name, out var p) ? p
            : throw new ModelFileException($"checkpoint '{Directory}' has no parameter '{name}' (no '{ParamPrefix}{name}' in its files).");

    public void Dispose()
    {
        foreach (var r in readers) r.Dispose();
    }
}
