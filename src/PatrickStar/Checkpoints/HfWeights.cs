using System.Text.Json;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace PatrickStar.Checkpoints;

/// <summary>
/// The weights of an HF folder across its safetensors files, read one tensor at a time. Every file's header is
/// validated on opening, and the index must name exactly the tensors its shards hold.
/// </summary>
public sealed class HfWeights : IDisposable
{
    private readonly List<SafetensorsReader> files;
    private readonly Dictionary<string, SafetensorsReader> byName;

    public string Directory { get; }

    /// <summary>Every tensor, in the order of the files and their headers.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    private HfWeights(string dir, List<SafetensorsReader> files, Dictionary<string, SafetensorsReader> byName)
    {
        Directory = dir;
        this.files = files;
        this.byName = byName;
        Entries = files.SelectMany(f => f.Entries).ToList();
    }

    public static HfWeights Open(string dir)
    {
        string index = Path.Combine(dir, HfFolder.IndexFile), single = Path.Combine(dir, HfFolder.SingleFile);
        var files = new List<SafetensorsReader>();
        try
        {
            Dictionary<string, string>? weightMap = null;
            if (File.Exists(index))
            {
                weightMap = ReadWeightMap(index);
                foreach (var shard in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
                {
                    string path = Path.Combine(dir, shard);
                    if (Path.GetDirectoryName(Path.GetFullPath(path)) != Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar) || !File.Exists(path))
                        throw new ModelFileException($"'{index}' names shard '{shard}', which is not a file in '{dir}'; the folder is incomplete: copy or export it again.");
                    files.Add(SafetensorsReader.Open(path));
                }
            }
            else if (File.Exists(single)) files.Add(SafetensorsReader.Open(single));
            else
                throw new ModelFileException($"folder '{dir}' has neither {HfFolder.SingleFile} nor {HfFolder.IndexFile}; give a Hugging Face model folder.");

            var byName = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
            foreach (var f in files)
                foreach (var e in f.Entries)
                {
                    if (byName.TryGetValue(e.Name, out var other))
                        throw new ModelFileException($"tensor '{e.Name}' is stored twice, in '{other.Path}' and '{f.Path}'; the folder is damaged: export it again.");
                    if (weightMap is not null && (!weightMap.TryGetValue(e.Name, out var listed) || Path.Combine(dir, listed) != f.Path))
                        throw new ModelFileException($"tensor '{e.Name}' is in '{f.Path}' but '{index}' does not list it there; the index does not match its shards: export the folder again.");
                    byName[e.Name] = f;
                }
            if (weightMap is not null && weightMap.Keys.FirstOrDefault(n => !byName.ContainsKey(n)) is string lost)
                throw new ModelFileException($"'{index}' lists tensor '{lost}' in '{weightMap[lost]}', which does not hold it; the folder is damaged: export it again.");
            return new HfWeights(dir, files, byName);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadWeightMap(string index)
    {
        try
        {
            var map = JsonNode.Parse(File.ReadAllText(index))?["weight_map"] as JsonObject
                      ?? throw new ModelFileException($"'{index}' has no \"weight_map\" object; the index is damaged: export the folder again.");
            return map.ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<string>(), StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new ModelFileException($"'{index}' is not a valid index ({e.Message}); export the folder again.", e);
        }
    }

    public SafetensorsReader FileOf(string name) =>
        byName.TryGetValue(name, out var f) ? f : throw new ModelFileException($"folder '{Directory}' holds no tensor '{name}'.");

    public Tensor Read(string name) => FileOf(name).Read(name);

    public void ReadInto(string name, Tensor destination) => FileOf(name).ReadInto(name, destination);

    public void Dispose()
    {
        foreach (var f in files) f.Dispose();
    }
}
