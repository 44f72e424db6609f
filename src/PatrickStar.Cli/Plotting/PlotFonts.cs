using ScottPlot;
using SkiaSharp;

namespace PatrickStar.Cli.Plotting;

/// <summary>
/// Gives every figure the bundled DejaVu Sans. The Linux SkiaSharp build ScottPlot uses
/// (NoDependencies) has no fontconfig, so on a bare machine system font look-ups come back empty
/// and labels vanish; an embedded font renders the same everywhere.
/// </summary>
public static class PlotFonts
{
    public const string Family = "PatrickStar Sans";

    private static readonly object Gate = new();
    private static bool _registered;
    private static SKTypeface? _regular, _bold;

    /// <summary>Registers the bundled font with ScottPlot (once) and returns its family name.</summary>
    public static string Register()
    {
        lock (Gate)
        {
            if (_registered) return Family;
            _regular = Load("DejaVuSans.ttf");
            _bold = Load("DejaVuSans-Bold.ttf");
            // First, so that it answers before ScottPlot's system-font resolvers are asked.
            Fonts.FontResolvers.Insert(0, new EmbeddedResolver());
            _registered = true;
            return Family;
        }
    }

    /// <summary>Points every text element of <paramref name="plot"/> at the bundled font.</summary>
    public static void Apply(Plot plot)
    {
        plot.Font.Set(Register());
        plot.Legend.FontName = Family;
    }

    private static SKTypeface Load(string file)
    {
        string name = $"PatrickStar.Cli.Plotting.Fonts.{file}";
        using var stream = typeof(PlotFonts).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"The font resource {name} is missing from pstar; rebuild it (the .ttf files are in src/PatrickStar.Cli/Plotting/Fonts).");
        // SKTypeface.FromStream wants a seekable stream it can keep; copy the resource to memory.
        var memory = new MemoryStream();
        stream.CopyTo(memory);
        memory.Position = 0;
        return SKTypeface.FromStream(memory)
            ?? throw new InvalidOperationException($"SkiaSharp could not read the bundled font {file}.");
    }

    private sealed class EmbeddedResolver : IFontResolver
    {
        public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing) =>
            fontName == Family ? (weight >= FontWeight.SemiBold ? _bold : _regular) : null;

        public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
            fontName == Family ? (bold ? _bold : _regular) : null;
    }
}
