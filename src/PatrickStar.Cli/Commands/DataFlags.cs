using System.CommandLine;
using PatrickStar.Config;
using PatrickStar.Data;

namespace PatrickStar.Cli.Commands;

/// <summary>The flags that say how data is tokenized and read (eval and generate; train binds them through ConfigFlags): each overrides its data.* config key.</summary>
internal sealed class DataFlags
{
    public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = DescriptionOf("--tokenizer") };
    public readonly Option<string?> TextField = new("--text-field") { Description = DescriptionOf("--text-field") };
    public readonly Option<string?> BinDType = new("--bin-dtype") { Description = DescriptionOf("--bin-dtype") };
    public readonly Option<string?> CacheDir = new("--cache-dir") { Description = DescriptionOf("--cache-dir") };

    // The descriptions live in the train command's flag table, so both read the same words.
    private static string DescriptionOf(string name) => ConfigFlags.All.Single(f => f.Name == name).Description;

    public DataFlags() => BinDType.AcceptOnlyFromAmong(DataOptions.BinDTypes);

    public void AddTo(Command command)
    {
        foreach (var o in new[] { Tokenizer, TextField, BinDType, CacheDir }) command.Options.Add(o);
    }

    public void Apply(ParseResult r, DataSection data)
    {
        if (r.GetValue(Tokenizer) is string t) data.Tokenizer = t;
        if (r.GetValue(TextField) is string f) data.TextField = f;
        if (r.GetValue(BinDType) is string b) data.BinDType = b;
        if (r.GetValue(CacheDir) is string c) data.CacheDir = c;
    }
}
