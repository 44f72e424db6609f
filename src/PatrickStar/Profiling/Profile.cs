using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using PatrickStar.Chunks;
using PatrickStar.Memory;

namespace PatrickStar.Profiling;

/// <summary>The stage of an iteration a moment or phase belongs to.</summary>
public enum ProfileStage { Forward, Backward, Optimizer }

/// <summary>What happened to a chunk's payload.</summary>
public enum ChunkEventType
{
    /// <summary>A payload buffer was first given to the chunk (from is null).</summary>
    Allocate,
    /// <summary>The payload was copied to another tier because it is needed there.</summary>
    Move,
    /// <summary>The payload was pushed out of a tier to make room (normally device to host).</summary>
    Evict,
    /// <summary>The payload's buffer was given back (to is null).</summary>
    Release,
}

/// <summary>
/// Bytes split by chunk kind. Mutable so that the engine can fill one in place:
/// <c>var b = new KindBytes(); b[ChunkKind.Param] += n;</c>.
/// </summary>
public record struct KindBytes
{
    // An explicit constructor marked for System.Text.Json: for a struct it would otherwise use the
    // implicit parameterless one and read a missing field as 0 instead of refusing the file.
    [JsonConstructor]
    public KindBytes(long param, long master, long momentum, long variance, long gradient)
    {
        Param = param;
        Master = master;
        Momentum = momentum;
        Variance = variance;
        Gradient = gradient;
    }

    public long Param { get; set; }
    public long Master { get; set; }
    public long Momentum { get; set; }
    public long Variance { get; set; }
    public long Gradient { get; set; }

    public long this[ChunkKind kind]
    {
        readonly get => kind switch
        {
            ChunkKind.Param => Param,
            ChunkKind.Master => Master,
            ChunkKind.Momentum => Momentum,
            ChunkKind.Variance => Variance,
            ChunkKind.Gradient => Gradient,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown chunk kind"),
        };
        set
        {
            switch (kind)
            {
                case ChunkKind.Param: Param = value; break;
                case ChunkKind.Master: Master = value; break;
                case ChunkKind.Momentum: Momentum = value; break;
                case ChunkKind.Variance: Variance = value; break;
                case ChunkKind.Gradient: Gradient = value; break;
                default: throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown chunk kind");
            }
        }
    }

    /// <summary>Sum over all kinds.</summary>
    [JsonIgnore]
    public readonly long Total => Param + Master + Momentum + Variance + Gradient;
}

/// <summary>What was run: the model, the engine and the memory budgets and chunk layout it had.</summary>
/// <param name="Model">Free-form model description, e.g. "gpt2-mini: 6 layers, hidden 384, 30.0M params".</param>
/// <param name="Engine">Engine name, e.g. "chunked".</param>
/// <param name="DeviceBudgetBytes">The device tier's budget (device_memory).</param>
/// <param name="HostBudgetBytes">The host tier's budget (host_memory).</param>
/// <param name="ChunkSizeElements">Elements per chunk.</param>
/// <param name="ChunkCount">Chunks in each chunk list (all kinds share one layout).</param>
/// <param name="BytesPerChunk">Bytes of one chunk of each kind (0 for a kind the run does not have).</param>
/// <param name="DiskBudgetBytes">The disk tier's budget (disk_memory); null when the run had no disk tier.</param>
public sealed record ProfileRun(
    string Model,
    string Engine,
    long DeviceBudgetBytes,
    long HostBudgetBytes,
    long ChunkSizeElements,
    int ChunkCount,
    KindBytes BytesPerChunk,
    long? DiskBudgetBytes = null);

/// <summary>Memory at one moment (a module's pre-forward or pre-backward hook, or the optimizer step).</summary>
/// <param name="Iteration">Iteration number given to <see cref="ProfileRecorder.BeginIteration"/>.</param>
/// <param name="Index">Moment index within the iteration, from 0.</param>
/// <param name="DeviceChunkAllowanceBytes">Bytes the planner let chunks use on the device at this moment, if known.</param>
public sealed record ProfileMoment(
    int Iteration,
    int Index,
    MomentKind Kind,
    string Module,
    ProfileStage Stage,
    double TimeMs,
    KindBytes DeviceChunkBytes,
    long DeviceNonModelBytes,
    KindBytes HostChunkBytes,
    long HostNonModelBytes,
    long? DeviceChunkAllowanceBytes)
{
    [JsonIgnore] public long DeviceTotalBytes => DeviceChunkBytes.Total + DeviceNonModelBytes;
    [JsonIgnore] public long HostTotalBytes => HostChunkBytes.Total + HostNonModelBytes;
}

/// <summary>One change of a chunk's payload: allocated, moved, evicted or released.</summary>
/// <param name="Moment">Index of the latest moment recorded in the iteration when it happened; -1 before the first.</param>
/// <param name="From">Tier the payload left; null for <see cref="ChunkEventType.Allocate"/>.</param>
/// <param name="To">Tier the payload went to; null for <see cref="ChunkEventType.Release"/>.</param>
public sealed record ProfileChunkEvent(
    double TimeMs,
    int Iteration,
    int Moment,
    ChunkEventType Type,
    ChunkKind Kind,
    int Index,
    Tier? From,
    Tier? To,
    long Bytes);

/// <summary>When one stage of one iteration ran.</summary>
public sealed record ProfilePhase(int Iteration, ProfileStage Stage, double StartMs, double EndMs);

/// <summary>One optimizer step's outcome.</summary>
public sealed record ProfileStep(long Step, double Loss, double? ValLoss, double StepMs, long Tokens);

/// <summary>A profile file is not one this version can read; the message names the file, the problem and the fix.</summary>
public sealed class ProfileFormatException : Exception
{
    public ProfileFormatException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// The recorded profile of a training run, saved as one JSON document (docs/profile-format.md).
/// Lists are in recording order, so times never decrease within each list.
/// </summary>
public sealed class Profile
{
    public const string FormatName = "patrickstar-profile";
    public const int CurrentVersion = 1;

    /// <summary>The most chunks per kind a profile may describe (a GPT-3-sized model has a few thousand).</summary>
    public const int MaxChunkCount = 100_000;

    public string Format { get; init; } = FormatName;
    public int Version { get; init; } = CurrentVersion;
    public required ProfileRun Run { get; init; }
    public List<ProfileMoment> Moments { get; init; } = new();
    public List<ProfileChunkEvent> ChunkEvents { get; init; } = new();
    public List<ProfilePhase> Phases { get; init; } = new();
    public List<ProfileStep> Steps { get; init; } = new();
    /// <summary>Disk traffic per iteration; empty for a run without a disk tier (and in files written before it existed).</summary>
    public List<ProfileIo> Io { get; init; } = new();

    /// <summary>snake_case names and enum values; a missing required field or a null where none is allowed is an error.</summary>
    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower, allowIntegerValues: false) },
        RespectRequiredConstructorParameters = true,
        RespectNullableAnnotations = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip, // later minor additions stay readable
        WriteIndented = false,
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Writes the profile to <paramref name="path"/> atomically: a temporary file beside it, then a rename.</summary>
    public void Save(string path)
    {
        string full = Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (dir is not null) Directory.CreateDirectory(dir);
        string temp = $"{full}.tmp-{Environment.ProcessId}";
        try
        {
            using (var stream = File.Create(temp))
                JsonSerializer.Serialize(stream, this, JsonOptions);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>Reads and validates a profile; any problem is a <see cref="ProfileFormatException"/> naming the file.</summary>
    public static Profile Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"Profile file '{path}' does not exist. Record one with the chunk engine, or check the path.", path);
        string name = Path.GetFileName(path);
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0)
            throw new ProfileFormatException($"Profile file '{path}' is empty. The run that wrote it probably stopped before saving; record it again.");

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new ProfileFormatException(
                $"Profile file '{path}' is not valid JSON ({e.Message}). It may be truncated or not a profile; record it again.", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ProfileFormatException($"Profile file '{path}' holds a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object; it is not a PatrickStar profile.");
            if (!root.TryGetProperty("format", out var format) || format.ValueKind != JsonValueKind.String)
                throw new ProfileFormatException($"Profile file '{path}' has no \"format\" field, so it is not a PatrickStar profile (expected \"format\": \"{FormatName}\").");
            if (format.GetString() != FormatName)
                throw new ProfileFormatException($"Profile file '{path}' has \"format\": \"{format.GetString()}\"; expected \"{FormatName}\". Pass a profile written by the chunk engine.");
            if (!root.TryGetProperty("version", out var version) || version.ValueKind != JsonValueKind.Number || !version.TryGetInt32(out int v))
                throw new ProfileFormatException($"Profile file '{path}' has no integer \"version\" field; expected \"version\": {CurrentVersion}.");
            if (v != CurrentVersion)
                throw new ProfileFormatException($"Profile file '{path}' is version {v} of the profile format; this pstar reads version {CurrentVersion}. Use the pstar that recorded it, or record it again.");

            Profile? profile;
            try
            {
                profile = root.Deserialize<Profile>(JsonOptions);
            }
            catch (JsonException e)
            {
                string where = e.Path is { Length: > 0 } p ? $" at {p}" : "";
                throw new ProfileFormatException($"Profile file '{path}' is not a valid profile{where}: {FirstSentence(e.Message)} See docs/profile-format.md for the fields.", e);
            }
            if (profile is null)
                throw new ProfileFormatException($"Profile file '{path}' holds null, not a profile.");
            profile.Validate(name);
            return profile;
        }
    }

    /// <summary>Checks what JSON typing cannot: coherent chunk events and phases.</summary>
    private void Validate(string file)
    {
        // Counts are checked against the records present and a bound, so that a damaged header cannot make a reader
        // (pstar plot draws a row per chunk) allocate without limit.
        if (Run.ChunkCount < 0 || Run.ChunkCount > MaxChunkCount)
            throw new ProfileFormatException($"Profile file '{file}': run.chunk_count {Run.ChunkCount} is outside 0..{MaxChunkCount:N0}; " +
                                             "the file is damaged or not written by pstar; record it again.");
        if (Run.ChunkSizeElements < 0 || Run.DeviceBudgetBytes < 0 || Run.HostBudgetBytes < 0 || Run.DiskBudgetBytes < 0)
            throw new ProfileFormatException($"Profile file '{file}': run has a negative size or budget; the file is damaged; record it again.");
        foreach (ChunkKind kind in Enum.GetValues<ChunkKind>())
            if (Run.BytesPerChunk[kind] < 0)
                throw new ProfileFormatException($"Profile file '{file}': run.bytes_per_chunk.{Snake(kind)} is negative; the file is damaged; record it again.");
        for (int i = 0; i < Moments.Count; i++)
            if (Moments[i].Iteration < 0 || Moments[i].Index < 0)
                throw new ProfileFormatException($"Profile file '{file}', moments[{i}]: iteration {Moments[i].Iteration} and index {Moments[i].Index} must be >= 0.");
        for (int i = 0; i < ChunkEvents.Count; i++)
        {
            var e = ChunkEvents[i];
            string at = $"Profile file '{file}', chunk_events[{i}]";
            if (e.Index < 0) throw new ProfileFormatException($"{at}: index {e.Index} is negative.");
            if (e.Index >= Run.ChunkCount)
                throw new ProfileFormatException($"{at}: index {e.Index} is not a chunk of the run (run.chunk_count is {Run.ChunkCount}); the file is damaged; record it again.");
            if (e.Type == ChunkEventType.Allocate && e.From is not null) throw new ProfileFormatException($"{at}: an allocate event must have \"from\": null.");
            if (e.Type != ChunkEventType.Allocate && e.From is null) throw new ProfileFormatException($"{at}: a {Snake(e.Type)} event needs a \"from\" tier.");
            if (e.Type == ChunkEventType.Release && e.To is not null) throw new ProfileFormatException($"{at}: a release event must have \"to\": null.");
            if (e.Type != ChunkEventType.Release && e.To is null) throw new ProfileFormatException($"{at}: a {Snake(e.Type)} event needs a \"to\" tier.");
        }
        for (int i = 0; i < Io.Count; i++)
            if (Io[i].BytesRead < 0 || Io[i].BytesWritten < 0 || Io[i].ReadSeconds < 0 || Io[i].WriteSeconds < 0 || Io[i].WaitSeconds < 0)
                throw new ProfileFormatException($"Profile file '{file}', io[{i}]: bytes and seconds must be >= 0; the file is damaged; record it again.");
        for (int i = 0; i < Phases.Count; i++)
            if (Phases[i].EndMs < Phases[i].StartMs)
                throw new ProfileFormatException($"Profile file '{file}', phases[{i}]: end_ms {Phases[i].EndMs} is before start_ms {Phases[i].StartMs}.");
    }

    private static string Snake<T>(T value) where T : Enum => JsonNamingPolicy.SnakeCaseLower.ConvertName(value.ToString());

    private static string FirstSentence(string message)
    {
        // System.Text.Json appends "Path: ... | LineNumber: ..." which the caller already reports as "at $.x".
        int cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        string s = cut > 0 ? message[..cut] : message;
        return s.EndsWith('.') ? s : s + ".";
    }
}

/// <summary>
/// Records a <see cref="Profile"/> while training runs. Calls are cheap (a lock, a clock read and
/// appending a struct to a list) so the engine can call them at every moment and chunk move.
/// Times are milliseconds since the recorder was created (or <see cref="Restart"/>ed).
/// </summary>
public sealed class ProfileRecorder
{
    private readonly object _gate = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private ProfileRun? _run;
    private readonly List<ProfileMoment> _moments = new();
    private readonly List<ProfileChunkEvent> _events = new();
    private readonly List<ProfilePhase> _phases = new();
    private readonly List<ProfileStep> _steps = new();
    private readonly List<ProfileIo> _io = new();
    private int _iteration;
    private int _nextMoment;
    // Start time of each stage's open phase, NaN when none is open: a fixed array, no dictionary.
    private readonly double[] _phaseStart = { double.NaN, double.NaN, double.NaN };

    /// <summary>Milliseconds since recording started.</summary>
    public double ElapsedMs => _clock.Elapsed.TotalMilliseconds;

    /// <summary>The iteration moments and events are being attributed to.</summary>
    public int Iteration { get { lock (_gate) return _iteration; } }

    /// <summary>Resets the clock to zero (e.g. when training proper starts after set-up).</summary>
    public void Restart() { lock (_gate) _clock.Restart(); }

    public void SetRun(string model, string engine, long deviceBudgetBytes, long hostBudgetBytes,
                       long chunkSizeElements, int chunkCount, KindBytes bytesPerChunk, long? diskBudgetBytes = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(engine);
        lock (_gate)
            _run = new ProfileRun(model, engine, deviceBudgetBytes, hostBudgetBytes, chunkSizeElements, chunkCount, bytesPerChunk, diskBudgetBytes);
    }

    /// <summary>Starts attributing moments and chunk events to <paramref name="iteration"/>; moment indices restart at 0.</summary>
    public void BeginIteration(int iteration)
    {
        lock (_gate)
        {
            _iteration = iteration;
            _nextMoment = 0;
        }
    }

    /// <summary>Records the memory at a moment; returns its index within the iteration. Chunk events that
    /// follow carry this index until the next moment.</summary>
    public int Moment(MomentKind kind, string module, ProfileStage stage,
                      KindBytes deviceChunkBytes, long deviceNonModelBytes,
                      KindBytes hostChunkBytes, long hostNonModelBytes, long? deviceChunkAllowanceBytes)
    {
        ArgumentNullException.ThrowIfNull(module);
        lock (_gate)
        {
            int index = _nextMoment++;
            _moments.Add(new ProfileMoment(_iteration, index, kind, module, stage, ElapsedMs,
                deviceChunkBytes, deviceNonModelBytes, hostChunkBytes, hostNonModelBytes, deviceChunkAllowanceBytes));
            return index;
        }
    }

    /// <summary>Records a chunk payload change. <paramref name="from"/> is null only for allocate, <paramref name="to"/> only for release.</summary>
    public void ChunkEvent(ChunkEventType type, ChunkKind kind, int index, Tier? from, Tier? to, long bytes)
    {
        // Checked here, where a wrong call is cheap to find, rather than when the file is loaded.
        if ((type == ChunkEventType.Allocate) != (from is null))
            throw new ArgumentException($"A {type} chunk event {(from is null ? "needs a from tier" : "must have from = null")}.", nameof(from));
        if ((type == ChunkEventType.Release) != (to is null))
            throw new ArgumentException($"A {type} chunk event {(to is null ? "needs a to tier" : "must have to = null")}.", nameof(to));
        if (index < 0) throw new ArgumentOutOfRangeException(nameof(index), index, "chunk index must be >= 0");
        lock (_gate)
            _events.Add(new ProfileChunkEvent(ElapsedMs, _iteration, _nextMoment - 1, type, kind, index, from, to, bytes));
    }

    /// <summary>Marks the start of a stage of the current iteration.</summary>
    public void BeginPhase(ProfileStage stage)
    {
        lock (_gate) _phaseStart[(int)stage] = ElapsedMs;
    }

    /// <summary>Marks the end of a stage begun with <see cref="BeginPhase"/>; without a matching begin it does nothing.</summary>
    public void EndPhase(ProfileStage stage)
    {
        lock (_gate)
        {
            double start = _phaseStart[(int)stage];
            if (double.IsNaN(start)) return;
            _phases.Add(new ProfilePhase(_iteration, stage, start, ElapsedMs));
            _phaseStart[(int)stage] = double.NaN;
        }
    }

    /// <summary>Records one optimizer step's loss (and validation loss when measured), time and tokens.</summary>
    public void Step(long step, double loss, double? valLoss, double stepMs, long tokens)
    {
        lock (_gate) _steps.Add(new ProfileStep(step, loss, valLoss, stepMs, tokens));
    }

    /// <summary>Records the current iteration's disk traffic (see PatrickStar.Tiers.DiskIterationMeter).</summary>
    public void Io(long bytesRead, long bytesWritten, double readSeconds, double writeSeconds, double waitSeconds, bool direct)
    {
        lock (_gate) _io.Add(new ProfileIo(_iteration, bytesRead, bytesWritten, readSeconds, writeSeconds, waitSeconds, direct));
    }

    /// <summary>A copy of what has been recorded so far.</summary>
    public Profile ToProfile()
    {
        lock (_gate)
        {
            return new Profile
            {
                Run = _run ?? throw new InvalidOperationException("ProfileRecorder.SetRun was never called: the profile has no run description."),
                Moments = new List<ProfileMoment>(_moments),
                ChunkEvents = new List<ProfileChunkEvent>(_events),
                Phases = new List<ProfilePhase>(_phases),
                Steps = new List<ProfileStep>(_steps),
                Io = new List<ProfileIo>(_io),
            };
        }
    }

    /// <summary>Saves what has been recorded so far (atomically: temporary file, then rename).</summary>
    public void Save(string path) => ToProfile().Save(path);
}
