using PatrickStar.Memory;
using PatrickStar.Profiling;

namespace PatrickStar.Engine;

/// <summary>Feeds an attached <see cref="ProfileRecorder"/>: the run, each moment's memory by tier and chunk kind, and the phases.</summary>
internal sealed class EngineProfile(ChunkLists chunks, TierMemory device, PlacementPolicy placement, NonModelTracer tracer)
{
    private ProfileStage? phase;

    public ProfileRecorder? Recorder { get; private set; }

    /// <summary>Records from now on; the chunks that exist already were allocated on the host at construction (or placed on the device since).</summary>
    public void Attach(ProfileRecorder recorder, string modelDescription, string engineName, ChunkEngineOptions options)
    {
        Recorder = recorder;
        var perChunk = new KindBytes();
        foreach (var list in chunks.Lists)
            if (list.Count > 0) perChunk[list[0].Kind] = list[0].Bytes;
        recorder.SetRun(modelDescription, engineName, options.DeviceMemory, options.HostMemory, chunks.Layout.ChunkSize, chunks.Layout.ChunkCount, perChunk,
            options.DiskDir is null ? null : options.DiskMemory);
        foreach (var c in chunks.All)
        {
            recorder.ChunkEvent(ChunkEventType.Allocate, c.Kind, c.Index, null, Tier.Host, c.Bytes);
            if (c.Tier == device) recorder.ChunkEvent(ChunkEventType.Move, c.Kind, c.Index, Tier.Host, Tier.Device, c.Bytes);
        }
    }

    public void BeginIteration() => Recorder?.BeginIteration(tracer.IterationIndex);

    public void Moment(MomentKind kind, string module, long nonModel)
    {
        if (Recorder is null) return;
        var stage = kind switch { MomentKind.PreForward => ProfileStage.Forward, MomentKind.PreBackward => ProfileStage.Backward, _ => ProfileStage.Optimizer };
        if (phase != stage)
        {
            if (phase is ProfileStage previous) Recorder.EndPhase(previous);
            Recorder.BeginPhase(stage);
            phase = stage;
        }
        Recorder.Moment(kind, module, stage, chunks.BytesIn(Tier.Device), nonModel, chunks.BytesIn(Tier.Host), tracer.BaselineBytes,
            placement.ProfiledAllowance(tracer.Moment));
    }

    public void EndIteration()
    {
        if (phase is ProfileStage last) Recorder?.EndPhase(last);
        phase = null;
    }
}
