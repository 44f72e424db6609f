using System.Text.Json;
using PatrickStar.Profiling;

namespace PatrickStar.Cli.Plotting;

/// <summary>One point of the loss curve; <see cref="ValLoss"/> only on steps where validation ran.</summary>
public readonly record struct LossPoint(double Step, double Loss, double? ValLoss);

/// <summary>Loss curves from a profile's steps or from a metrics JSON Lines file (`pstar train --metrics`).</summary>
public static class LossSeries
{
    public static List<LossPoint> FromProfile(Profile profile)
    {
        var points = new List<LossPoint>(profile.Steps.Count);
        foreach (var s in profile.Steps) points.Add(new LossPoint(s.Step, s.Loss, s.ValLoss));
        return points;
    }

    /// <summary>Reads `step`, `loss` and optional `val_loss` from each line; a bad line is an error naming file and line.</summary>
    public static List<LossPoint> FromMetrics(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Metrics file '{path}' does not exist. Write one with pstar train --metrics FILE, or check the path.", path);
        var points = new List<LossPoint>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException("the line is not a JSON object");
                if (!root.TryGetProperty("step", out var step) || step.ValueKind != JsonValueKind.Number)
                    throw new InvalidDataException("it has no numeric \"step\"");
                if (!root.TryGetProperty("loss", out var loss) || loss.ValueKind != JsonValueKind.Number)
                    throw new InvalidDataException("it has no numeric \"loss\"");
                double? val = root.TryGetProperty("val_loss", out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
                points.Add(new LossPoint(step.GetDouble(), loss.GetDouble(), val));
            }
            catch (Exception e) when (e is JsonException or InvalidDataException)
            {
                string why = e is JsonException ? "it is not valid JSON" : e.Message;
                throw new InvalidDataException(
                    $"Metrics file '{path}', line {lineNumber}: {why}. Pass the JSON Lines file written by pstar train --metrics.", e);
            }
        }
        return points;
    }
}
