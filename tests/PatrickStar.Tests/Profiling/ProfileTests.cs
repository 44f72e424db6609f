using PatrickStar.Chunks;
using PatrickStar.Engine;
using PatrickStar.Memory;
using PatrickStar.Profiling;
using Xunit;

namespace PatrickStar.Tests.Profiling;

/// <summary>The profile file: what the recorder records is what Load gives back, and bad files are refused clearly.</summary>
public class ProfileTests
{
    private static ProfileRecorder RecordSmallRun()
    {
        var r = new ProfileRecorder();
        r.SetRun("gpt2-tiny", "chunked", 64L << 20, 1L << 30, 1 << 20, 3, new KindBytes(4 << 20, 4 << 20, 4 << 20, 4 << 20, 0));
        r.ChunkEvent(ChunkEventType.Allocate, ChunkKind.Param, 0, null, Tier.Device, 4 << 20);
        r.ChunkEvent(ChunkEventType.Allocate, ChunkKind.Master, 0, null, Tier.Host, 4 << 20);
        for (int it = 0; it < 2; it++)
        {
            r.BeginIteration(it);
            r.BeginPhase(ProfileStage.Forward);
            var device = new KindBytes { Param = 4 << 20 };
            device[ChunkKind.Gradient] += 1 << 20;
            Assert.Equal(0, r.Moment(MomentKind.PreForward, "wte", ProfileStage.Forward, device, 123, new KindBytes(0, 4 << 20, 0, 0, 0), 5, null));
            r.ChunkEvent(ChunkEventType.Evict, ChunkKind.Param, 0, Tier.Device, Tier.Host, 4 << 20);
            r.ChunkEvent(ChunkEventType.Move, ChunkKind.Param, 1, Tier.Host, Tier.Device, 4 << 20);
            r.EndPhase(ProfileStage.Forward);
            r.BeginPhase(ProfileStage.Backward);
            Assert.Equal(1, r.Moment(MomentKind.PreBackward, "h.0", ProfileStage.Backward, device, 456, default, 0, 60L << 20));
            r.EndPhase(ProfileStage.Backward);
            r.BeginPhase(ProfileStage.Optimizer);
            r.Moment(MomentKind.OptimizerStep, "optimizer", ProfileStage.Optimizer, default, 0, default, 0, 60L << 20);
            r.EndPhase(ProfileStage.Optimizer);
            r.Step(it + 1, 10.5 - it, it == 1 ? 9.75 : null, 12.5, 2048);
        }
        r.ChunkEvent(ChunkEventType.Release, ChunkKind.Param, 1, Tier.Device, null, 4 << 20);
        return r;
    }

    private static void AssertSame(Profile expected, Profile actual)
    {
        Assert.Equal(expected.Format, actual.Format);
        Assert.Equal(expected.Version, actual.Version);
        Assert.Equal(expected.Run, actual.Run);
        Assert.Equal(expected.Moments, actual.Moments);
        Assert.Equal(expected.ChunkEvents, actual.ChunkEvents);
        Assert.Equal(expected.Phases, actual.Phases);
        Assert.Equal(expected.Steps, actual.Steps);
    }

    [Fact]
    public void RecorderSaveLoadRoundTrips()
    {
        using var dir = new TempDir();
        var recorder = RecordSmallRun();
        string path = Path.Combine(dir.Path, "sub", "profile.json");
        recorder.Save(path);
        var loaded = Profile.Load(path);
        AssertSame(recorder.ToProfile(), loaded);

        Assert.Equal(6, loaded.Moments.Count);
        Assert.Equal(6, loaded.Phases.Count);
        Assert.Equal(7, loaded.ChunkEvents.Count);
        Assert.Equal(-1, loaded.ChunkEvents[0].Moment); // before the first moment
        Assert.Equal(0, loaded.ChunkEvents[2].Moment);  // after moment 0 of iteration 0
        Assert.Equal(5L << 20, loaded.Moments[0].DeviceChunkBytes.Total);
        Assert.Null(loaded.Steps[0].ValLoss);
        Assert.Equal(9.75, loaded.Steps[1].ValLoss);
        Assert.Empty(Directory.GetFiles(Path.Combine(dir.Path, "sub"), "*.tmp-*")); // the temporary file was renamed
    }

    [Fact]
    public void SyntheticProfileRoundTrips()
    {
        using var dir = new TempDir();
        var profile = SyntheticProfile.Build();
        string path = Path.Combine(dir.Path, "profile.json");
        profile.Save(path);
        AssertSame(profile, Profile.Load(path));
    }

    [Fact]
    public void FileUsesSnakeCaseNamesAndValues()
    {
        string json = RecordSmallRun().ToProfile().ToJson();
        foreach (string expected in new[]
                 {
                     "\"format\":\"patrickstar-profile\"", "\"version\":1", "\"chunk_size_elements\":", "\"bytes_per_chunk\":{\"param\":",
                     "\"kind\":\"pre_forward\"", "\"kind\":\"optimizer_step\"", "\"stage\":\"backward\"", "\"device_chunk_bytes\":",
                     "\"device_non_model_bytes\":123", "\"device_chunk_allowance_bytes\":null", "\"type\":\"evict\"", "\"from\":\"device\"",
                     "\"to\":\"host\"", "\"from\":null", "\"to\":null", "\"val_loss\":9.75", "\"chunk_events\":", "\"time_ms\":",
                 })
            Assert.Contains(expected, json);
        Assert.DoesNotContain("\"total\"", json); // computed totals are not stored
    }

    [Fact]
    public void TruncatedFileIsRefusedNamingTheFile()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "cut.json");
        RecordSmallRun().Save(path);
        string text = File.ReadAllText(path);
        File.WriteAllText(path, text[..(text.Length / 2)]);
        var e = Assert.Throws<ProfileFormatException>(() => Profile.Load(path));
        Assert.Contains("cut.json", e.Message);
        Assert.Contains("not valid JSON", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void WrongFormatAndVersionAreRefused()
    {
        using var dir = new TempDir();
        string other = dir.File("other.json", "{\"format\":\"chrome-trace\",\"version\":1}");
        var e = Assert.Throws<ProfileFormatException>(() => Profile.Load(other));
        Assert.Contains("other.json", e.Message);
        Assert.Contains("\"chrome-trace\"", e.Message);
        Assert.Contains("expected \"patrickstar-profile\"", e.Message);

        string none = dir.File("none.json", "{\"steps\":[]}");
        Assert.Contains("no \"format\" field", Assert.Throws<ProfileFormatException>(() => Profile.Load(none)).Message);

        string json = RecordSmallRun().ToProfile().ToJson().Replace("\"version\":1", "\"version\":2");
        string future = dir.File("future.json", json);
        var v = Assert.Throws<ProfileFormatException>(() => Profile.Load(future));
        Assert.Contains("version 2", v.Message);
        Assert.Contains("reads version 1", v.Message);

        string array = dir.File("array.json", "[1,2]");
        Assert.Contains("not an object", Assert.Throws<ProfileFormatException>(() => Profile.Load(array)).Message);
    }

    [Fact]
    public void MissingFieldIsRefusedNamingIt()
    {
        using var dir = new TempDir();
        string json = RecordSmallRun().ToProfile().ToJson();
        string noRun = dir.File("norun.json", "{\"format\":\"patrickstar-profile\",\"version\":1,\"moments\":[]}");
        var e = Assert.Throws<ProfileFormatException>(() => Profile.Load(noRun));
        Assert.Contains("norun.json", e.Message);
        Assert.Contains("run", e.Message);

        string noModule = dir.File("nomodule.json", json.Replace("\"module\":\"wte\",", ""));
        var m = Assert.Throws<ProfileFormatException>(() => Profile.Load(noModule));
        Assert.Contains("nomodule.json", m.Message);
        Assert.Contains("module", m.Message);
        Assert.Contains("$.moments[0]", m.Message);

        // A missing number must not read as 0.
        int at = json.IndexOf("\"time_ms\":", json.IndexOf("\"moments\"", StringComparison.Ordinal), StringComparison.Ordinal);
        int comma = json.IndexOf(',', at);
        string noTime = dir.File("notime.json", json.Remove(at, comma - at + 1));
        var t = Assert.Throws<ProfileFormatException>(() => Profile.Load(noTime));
        Assert.Contains("time_ms", t.Message);
        Assert.Contains("$.moments[0]", t.Message);

        string noGradient = dir.File("nogradient.json", json.Replace(",\"gradient\":0}", "}"));
        var g = Assert.Throws<ProfileFormatException>(() => Profile.Load(noGradient));
        Assert.Contains("gradient", g.Message);

        string badKind = dir.File("badkind.json", json.Replace("\"kind\":\"pre_forward\"", "\"kind\":\"sideways\""));
        var k = Assert.Throws<ProfileFormatException>(() => Profile.Load(badKind));
        Assert.Contains("$.moments[0].kind", k.Message);

        string badEvent = dir.File("badevent.json", json.Replace("\"type\":\"evict\"", "\"type\":\"allocate\""));
        var b = Assert.Throws<ProfileFormatException>(() => Profile.Load(badEvent));
        Assert.Contains("chunk_events[2]", b.Message);
        Assert.Contains("allocate event must have \"from\": null", b.Message);
    }

    [Fact]
    public void EmptyAndMissingFilesAreRefused()
    {
        using var dir = new TempDir();
        Assert.Contains("is empty", Assert.Throws<ProfileFormatException>(() => Profile.Load(dir.File("empty.json", ""))).Message);
        Assert.Contains("does not exist", Assert.Throws<FileNotFoundException>(() => Profile.Load(Path.Combine(dir.Path, "missing.json"))).Message);
    }

    [Fact]
    public void RecorderRefusesIncoherentChunkEvents()
    {
        var r = new ProfileRecorder();
        Assert.Throws<ArgumentException>(() => r.ChunkEvent(ChunkEventType.Allocate, ChunkKind.Param, 0, Tier.Host, Tier.Device, 1));
        Assert.Throws<ArgumentException>(() => r.ChunkEvent(ChunkEventType.Move, ChunkKind.Param, 0, null, Tier.Device, 1));
        Assert.Throws<ArgumentException>(() => r.ChunkEvent(ChunkEventType.Release, ChunkKind.Param, 0, Tier.Device, Tier.Host, 1));
        Assert.Throws<ArgumentException>(() => r.ChunkEvent(ChunkEventType.Evict, ChunkKind.Param, 0, Tier.Device, null, 1));
        Assert.Throws<InvalidOperationException>(() => r.ToProfile()); // SetRun never called
    }

    [Fact]
    public void EndPhaseWithoutBeginRecordsNothing()
    {
        var r = new ProfileRecorder();
        r.SetRun("m", "chunked", 0, 0, 1, 0, default);
        r.EndPhase(ProfileStage.Backward);
        Assert.Empty(r.ToProfile().Phases);
    }
}
