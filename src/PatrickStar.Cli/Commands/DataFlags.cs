using System.CommandLine;
using PatrickStar.Config;
using PatrickStar.Data;

namespace PatrickStar.Cli.Commands;

/// <summary>The flags that say how data is tokenized and read (train and eval): each overrides its data.* config key.</summary>
internal sealed class DataFlags
{
    public readonly Option<string?> Tokenizer = new("--tokenizer")
    {
        Description = $"{string.Join(", ", Tokenizers.Names)}, or a folder with tokenizer.json / tokenizer.model (default: the --init-from folder's own, else gpt2).",
    };
    public readonly Option<string?> TextField = new("--text-field") { Description = "The .jsonl field / .parquet column holding the text (default \"text\")." };
    public readonly Option<string?> BinDType = new("--bin-dtype") { Description = "Token id width of nanoGPT-style .bin files: uint16 (default) or uint32." };
    public readonly Option<string?> CacheDir = new("--cache-dir") { Description = "Folder for token caches (default ~/.cache/pstar); never the data's folder." };

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
