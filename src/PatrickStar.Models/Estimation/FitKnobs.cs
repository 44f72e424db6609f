using PatrickStar.Config;
using PatrickStar.Profiling;

namespace PatrickStar.Models.Estimation;

/// <summary>
/// The changes that would make a run that does not fit fit: single knobs first, then combinations of the knobs that
/// change nothing about what is learned per step (bf16-fp32 storage, checkpointing, a smaller micro-batch with more
/// accumulation, more ranks), then more memory. Every suggestion is the estimate re-run with the change applied.
/// </summary>
internal static class FitKnobs
{
    /// <summary>One knob: its candidate settings, most preferred first (the first that fits is taken).</summary>
    private sealed record Knob(string Name, IReadOnlyList<(string Change, string Flags, Func<EstimateRequest, EstimateRequest> Apply)> Settings);

    /// <summary>At most this many combinations are shown: the first found, fewest knobs first.</summary>
    private const int MaxCombinations = 3;

    public static IReadOnlyList<FitKnob> Find(MemoryEstimate failed)
    {
        var r = failed.Request;
        var found = new List<FitKnob>();
        MemoryEstimate Try(EstimateRequest changed) => MemoryEstimator.Estimate(changed, suggestKnobs: false);

        var knobs = Knobs(r);
        var alone = new HashSet<string>();
        foreach (var knob in knobs)
            if (FirstFitting(r, new[] { knob }, Try) is { } fit)
            {
                found.Add(fit);
                alone.Add(knob.Name);
            }
        for (int s = r.Sequence / 2; s >= 16; s /= 2)
            if (Try(r with { Sequence = s }) is { Fits: true } shorter)
            {
                found.Add(new($"sequence length {s}", $"--seq {s}", shorter));
                break;
            }

        // Combinations of knobs none of which fits alone (a combination with one that does would only add a change).
        var rest = knobs.Where(k => !alone.Contains(k.Name)).ToList();
        int combinations = 0;
        for (int size = 2; size <= rest.Count && combinations < MaxCombinations; size++)
            foreach (var combination in Subsets(rest, size))
            {
                if (combinations >= MaxCombinations) break;
                if (FirstFitting(r, combination, Try) is not { } fit) continue;
                found.Add(fit);
                combinations++;
            }

        AddMemoryKnobs(failed, found, Try);
        if (!r.Chunked)
        {
            // The plain engine keeps all model data on the device; the chunk engine needs only a working set there.
            if (Try(r with { Engine = "chunked", Placement = ChunkPlacement.Dynamic }) is { Fits: true } offload)
                found.Add(new("the chunk engine (model data on the host, parameters moved per module)", "--engine chunked", offload));
        }
        else if (r.Placement == ChunkPlacement.Static && Try(r with { Placement = ChunkPlacement.Dynamic }) is { Fits: true } dynamic)
            found.Add(new("dynamic placement (parameter chunks moved per module)", "--placement dynamic", dynamic));
        return found;
    }

    private static List<Knob> Knobs(EstimateRequest r)
    {
        var knobs = new List<Knob>();
        if (r.Precision == Precision.Fp32)
            knobs.Add(new("precision", new[] { ("bf16 storage with fp32 compute (14 B/param, fp32 speed)", "--precision bf16-fp32",
                (Func<EstimateRequest, EstimateRequest>)(q => q with { Precision = Precision.Bf16Fp32 })) }));
        if (!r.Checkpointing)
            knobs.Add(new("checkpointing", new[] { ("activation checkpointing", "--checkpointing",
                (Func<EstimateRequest, EstimateRequest>)(q => q with { Checkpointing = true })) }));
        // The largest micro-batch that fits, with more accumulation steps keeping the tokens per step.
        var batches = new List<(string, string, Func<EstimateRequest, EstimateRequest>)>();
        for (int b = r.MicroBatch / 2; b >= 1; b /= 2)
        {
            int accum = r.GradientAccumulation * (int)Math.Ceiling((double)r.MicroBatch / b);
            int batch = b;
            batches.Add(($"micro-batch {b} with {accum} accumulation steps (same tokens per step)", $"--batch {b} --accum {accum}",
                q => q with { MicroBatch = batch, GradientAccumulation = accum }));
            if (b == 1) break;
        }
        if (batches.Count > 0) knobs.Add(new("micro-batch", batches));
        if (r.Chunked)
        {
            var ranks = new List<(string, string, Func<EstimateRequest, EstimateRequest>)>();
            for (int n = Math.Max(2, r.Ranks * 2); n <= 64; n *= 2)
            {
                int count = n;
                ranks.Add(($"{n} data-parallel ranks (pstar launch -n {n}; each holds 1/{n} of the chunks)", $"--ranks {n}", q => q with { Ranks = count }));
            }
            knobs.Add(new("ranks", ranks));
        }
        return knobs;
    }

    /// <summary>The first setting (in the knobs' order of preference) of all these knobs together that fits, or null.</summary>
    private static FitKnob? FirstFitting(EstimateRequest r, IReadOnlyList<Knob> knobs, Func<EstimateRequest, MemoryEstimate> estimate)
    {
        foreach (var settings in Product(knobs.Select(k => k.Settings).ToList()))
        {
            var changed = settings.Aggregate(r, (q, s) => s.Apply(q));
            if (estimate(changed) is { Fits: true } result)
                return new(string.Join(" + ", settings.Select(s => s.Change)), string.Join(" ", settings.Select(s => s.Flags)), result);
        }
        return null;
    }

    private static IEnumerable<List<T>> Product<T>(IReadOnlyList<IReadOnlyList<T>> lists)
    {
        if (lists.Count == 0)
        {
            yield return new List<T>();
            yield break;
        }
        foreach (var first in lists[0])
            foreach (var tail in Product(lists.Skip(1).ToList()))
                yield return tail.Prepend(first).ToList();
    }

    private static IEnumerable<List<T>> Subsets<T>(IReadOnlyList<T> items, int size, int from = 0)
    {
        if (size == 0)
        {
            yield return new List<T>();
            yield break;
        }
        for (int i = from; i <= items.Count - size; i++)
            foreach (var tail in Subsets(items, size - 1, i + 1))
                yield return tail.Prepend(items[i]).ToList();
    }

    /// <summary>More memory: exactly what each short tier lacks, checked alone and together.</summary>
    private static void AddMemoryKnobs(MemoryEstimate failed, List<FitKnob> found, Func<EstimateRequest, MemoryEstimate> estimate)
    {
        var r = failed.Request;
        var device = failed.Tiers.FirstOrDefault(t => t.Tier == "device" && t.Short > 0);
        var host = failed.Tiers.FirstOrDefault(t => t.Tier == "host" && t.Short > 0);
        if (host is not null)
        {
            var more = r with { HostMemory = MemoryEstimator.RoundUpMiB(host.Needed) };
            if (estimate(more) is { Fits: true } hostFit)
                found.Add(new($"host memory {Bytes.Format(more.HostMemory)} (+{Bytes.Format(more.HostMemory - r.HostMemory)})", $"--host-memory {more.HostMemory >> 20}MiB", hostFit));
        }
        if (device is not null && GrowUntilFits(r, device.Needed, null, estimate) is { } more2)
        {
            long d = more2.Request.DeviceMemory!.Value;
            found.Add(new($"device memory {Bytes.Format(d)} (+{Bytes.Format(d - (r.DeviceMemory ?? 0))})", $"--device-memory {d >> 20}MiB", more2));
        }
        if (device is not null && host is not null && GrowUntilFits(r, device.Needed, host.Needed, estimate) is { } both)
            found.Add(new($"device memory {Bytes.Format(both.Request.DeviceMemory!.Value)} and host memory {Bytes.Format(both.Request.HostMemory)} " +
                          $"(+{Bytes.Format(both.Request.HostMemory - r.HostMemory)})",
                $"--device-memory {both.Request.DeviceMemory!.Value >> 20}MiB --host-memory {both.Request.HostMemory >> 20}MiB", both));
    }

    /// <summary>
    /// Raises the budgets to what the estimate says is needed, a few times over: the automatic chunk size grows with
    /// the device budget (ChunkSizeSearch.ForDevice), so a bigger budget can need a little more again.
    /// </summary>
    private static MemoryEstimate? GrowUntilFits(EstimateRequest r, long deviceNeeded, long? hostNeeded, Func<EstimateRequest, MemoryEstimate> estimate)
    {
        var request = r with { DeviceMemory = MemoryEstimator.RoundUpMiB(deviceNeeded), HostMemory = hostNeeded is long h ? MemoryEstimator.RoundUpMiB(h) : r.HostMemory };
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var e = estimate(request);
            if (e.Fits) return e;
            var d = e.Tiers.FirstOrDefault(t => t.Tier == "device" && t.Short > 0);
            var hst = e.Tiers.FirstOrDefault(t => t.Tier == "host" && t.Short > 0);
            if (d is null && hst is null) return null;
            if (hst is not null && hostNeeded is null) return null; // this knob only changes the device budget
            request = request with
            {
                DeviceMemory = d is null ? request.DeviceMemory : MemoryEstimator.RoundUpMiB(d.Needed),
                HostMemory = hst is null ? request.HostMemory : MemoryEstimator.RoundUpMiB(hst.Needed),
            };
        }
        return null;
    }
}
