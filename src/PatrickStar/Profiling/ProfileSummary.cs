using PatrickStar.Memory;

namespace PatrickStar.Profiling;

/// <summary>
/// What a profile says about the tiers and the disk, in figures: the peak chunk bytes (and chunks) each tier held at a
/// moment, and the disk traffic of all recorded iterations. `pstar plot` prints it beside the figures.
/// </summary>
/// <param name="PeakBytes">Largest chunk bytes in each tier at any moment.</param>
/// <param name="PeakChunks">Most chunks in each tier at any moment.</param>
/// <param name="Disk">Summed disk traffic; null when the profile has no disk records.</param>
public sealed record ProfileSummary(TierAmounts PeakBytes, TierAmounts PeakChunks, long? DiskBudgetBytes, ProfileIo? Disk)
{
    /// <summary>The part of the disk time compute did not wait for (1 without I/O); null without disk records.</summary>
    public double? OverlappedFraction => Disk is { } d ? d.IoSeconds <= 0 ? 1 : Math.Clamp(1 - d.WaitSeconds / d.IoSeconds, 0, 1) : null;

    public static ProfileSummary Of(Profile profile)
    {
        TierAmounts peakBytes = default, peakChunks = default;
        foreach (var p in TierOccupancy.PerMoment(profile))
        {
            peakBytes = new(Math.Max(peakBytes.Device, p.Bytes.Device), Math.Max(peakBytes.Host, p.Bytes.Host), Math.Max(peakBytes.Disk, p.Bytes.Disk));
            peakChunks = new(Math.Max(peakChunks.Device, p.Chunks.Device), Math.Max(peakChunks.Host, p.Chunks.Host), Math.Max(peakChunks.Disk, p.Chunks.Disk));
        }
        ProfileIo? disk = null;
        if (profile.Io.Count > 0)
            disk = new ProfileIo(-1, profile.Io.Sum(i => i.BytesRead), profile.Io.Sum(i => i.BytesWritten), profile.Io.Sum(i => i.ReadSeconds),
                profile.Io.Sum(i => i.WriteSeconds), profile.Io.Sum(i => i.WaitSeconds), profile.Io.All(i => i.Direct));
        return new ProfileSummary(peakBytes, peakChunks, profile.Run.DiskBudgetBytes, disk);
    }

    /// <summary>Lines for the console: one per tier, then the disk traffic.</summary>
    public IEnumerable<string> Lines()
    {
        foreach (var tier in Enum.GetValues<Tier>())
        {
            if (tier == Tier.Disk && PeakChunks.Disk == 0 && Disk is null) continue;
            string budget = tier == Tier.Disk && DiskBudgetBytes is long b ? $" of a {Bytes.Format(b)} budget" : "";
            yield return $"{tier.ToString().ToLowerInvariant()}: at most {PeakChunks[tier]} chunks, {Bytes.Format(PeakBytes[tier])}{budget}";
        }
        if (Disk is { } d)
            yield return $"disk I/O ({(d.Direct ? "direct" : "buffered")}): read {Bytes.Format(d.BytesRead)} in {d.ReadSeconds:0.000} s, " +
                         $"wrote {Bytes.Format(d.BytesWritten)} in {d.WriteSeconds:0.000} s; compute waited {d.WaitSeconds:0.000} s, " +
                         $"so {OverlappedFraction * 100:0}% of the {d.IoSeconds:0.000} I/O seconds overlapped compute";
    }
}
