using PatrickStar.Chunks;
using PatrickStar.Cli.Plotting;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using PatrickStar.Tests.Tiers;
using PatrickStar.Tiers;
using PatrickStar.Training;
using Xunit;

namespace PatrickStar.Tests.Profiling;

/// <summary>The third tier in the profile: occupancy per moment, residency spans, the tiers figure's data and the summary.</summary>
public class DiskProfileTests
{
    private const long C = DiskProfile.ChunkBytes;

    [Fact]
    public void OccupancyPerMomentCountsTheDiskTier()
    {
        var points = TierOccupancy.PerMoment(DiskProfile.Build());
        Assert.Equal(new[] { new TierAmounts(1, 3, 0), new TierAmounts(1, 2, 1), new TierAmounts(1, 3, 0) }, points.Select(p => p.Chunks));
        Assert.Equal(new TierAmounts(C, 2 * C, C), points[1].Bytes);
    }

    [Fact]
    public void ResidencySpansShowTheStretchOnDisk()
    {
        var spans = TierOccupancy.Spans(DiskProfile.Build(), endMs: 40);
        var master1 = spans.Where(s => s.Kind == ChunkKind.Master && s.Index == 1).ToList();
        Assert.Equal(new[]
        {
            new ResidencySpan(ChunkKind.Master, 1, 4, 15, Tier.Host),
            new ResidencySpan(ChunkKind.Master, 1, 15, 25, Tier.Disk),
            new ResidencySpan(ChunkKind.Master, 1, 25, 40, Tier.Host),
        }, master1);
        Assert.Single(spans, s => s.Tier == Tier.Disk);
    }

    [Fact]
    public void TiersFigureHasADiskSeriesOnlyForRunsWithADiskTier()
    {
        var series = TierPlots.Series(DiskProfile.Build(), endMs: 40);
        Assert.Equal(new (double, long)[] { (10, 0), (20, 0), (20, C), (30, C), (30, 0), (40, 0) }, series[Tier.Disk]);
        Assert.Equal(new (double, long)[] { (10, 3 * C), (20, 3 * C), (20, 2 * C), (30, 2 * C), (30, 3 * C), (40, 3 * C) }, series[Tier.Host]);
        Assert.False(TierPlots.Series(SyntheticProfile.Build(1), endMs: 1e6).ContainsKey(Tier.Disk));
    }

    [Fact]
    public void SummaryAddsUpTheDiskTraffic()
    {
        var s = ProfileSummary.Of(DiskProfile.Build());
        Assert.Equal(new TierAmounts(C, 3 * C, C), s.PeakBytes);
        Assert.Equal(new ProfileIo(-1, 3 * C, C, 0.75, 0.5, 0.3, true), s.Disk);
        Assert.Equal(1 - 0.3 / 1.25, s.OverlappedFraction!.Value, 12);
        var lines = s.Lines().ToList();
        Assert.Contains("disk: at most 1 chunks, 1.0 MiB of a 8.0 MiB budget", lines);
        Assert.Contains(lines, l => l.StartsWith("disk I/O (direct): read 3.0 MiB in 0.750 s, wrote 1.0 MiB in 0.500 s; compute waited 0.300 s, so 76%", StringComparison.Ordinal));
        Assert.DoesNotContain(ProfileSummary.Of(SyntheticProfile.Build(1)).Lines(), l => l.StartsWith("disk", StringComparison.Ordinal));
    }

    [Fact]
    public void DiskRecordsRoundTripAndOlderFilesWithoutThemStillLoad()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "p.json");
        var profile = DiskProfile.Build();
        profile.Save(path);
        var back = Profile.Load(path);
        Assert.Equal(profile.Io, back.Io);
        Assert.Equal(profile.Run, back.Run);

        // A file from before the disk tier: no "io" list and no disk budget.
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        node.Remove("io");
        node["run"]!.AsObject().Remove("disk_budget_bytes");
        File.WriteAllText(path, node.ToJsonString());
        var old = Profile.Load(path);
        Assert.Empty(old.Io);
        Assert.Null(old.Run.DiskBudgetBytes);
    }

    [Fact]
    public void IterationMeterReportsEachIterationsTrafficAndOverlap()
    {
        const long chunk = 8 * 4096;
        using var f = new TierFixture(make: inner => new InjectedChunkFile(inner) { ReadDelayMs = 200 });
        var store = f.Tier.CreateStore("master", chunk, 2);
        using var pool = new BufferPool(2, chunk);
        using var worker = new IoWorker();
        var recorder = new ProfileRecorder();
        recorder.SetRun("toy", "chunked", 1, 1, 1, 2, default, 1L << 30);
        var meter = new DiskIterationMeter(worker.Statistics, f.Tier.Direct);

        // Iteration 0: compute needs the chunk at once and waits for the whole read.
        recorder.BeginIteration(0);
        pool.Return(worker.Read(store, 0, pool.Rent()).Wait());
        var waited = meter.EndIteration(recorder);
        // Iteration 1: the read runs ahead while compute works; a dirty eviction is written behind.
        recorder.BeginIteration(1);
        var ahead = worker.Read(store, 1, pool.Rent());
        Thread.Sleep(400);
        pool.Return(ahead.Wait());
        worker.Evict(store, 0, pool.Rent(), dirty: true, pool.Return);
        worker.Flush();
        var hidden = meter.EndIteration(recorder);

        Assert.Equal((chunk, 0L), (waited.BytesRead, waited.BytesWritten));
        Assert.Equal((chunk, chunk), (hidden.BytesRead, hidden.BytesWritten));
        Assert.True(waited.OverlappedFraction < 0.3, $"iteration 0 overlapped {waited.OverlappedFraction}");
        Assert.True(hidden.OverlappedFraction > 0.9, $"iteration 1 overlapped {hidden.OverlappedFraction}");
        Assert.True(hidden.ReadSeconds >= 0.19 && hidden.WriteSeconds > 0, $"{hidden}");
        Assert.Equal(worker.Statistics.IoSeconds, waited.IoSeconds + hidden.IoSeconds, 9);
        Assert.Equal(new[] { 0, 1 }, recorder.ToProfile().Io.Select(i => i.Iteration));
        Assert.Equal(waited.WaitSeconds, recorder.ToProfile().Io[0].WaitSeconds);

        var named = new EngineStatistics(Disk: hidden).Named().ToDictionary(kv => kv.Key, kv => kv.Value);
        Assert.Equal(chunk, named["disk_bytes_written"]);
        Assert.Equal(hidden.OverlappedFraction, named["disk_overlapped_fraction"]);
    }
}
