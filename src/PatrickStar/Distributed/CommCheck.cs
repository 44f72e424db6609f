using System.Diagnostics;
using System.Text;
using static TorchSharp.torch;

namespace PatrickStar.Distributed;

/// <summary>
/// Runs every collective on fp32, bf16 and fp16 buffers and compares each result exactly (element values, dtype and length) with a
/// serial reference that every rank computes by itself (each rank can regenerate every other rank's
/// input from its seed). The inputs are multiples of a power of two few enough bits wide that any
/// fp32 sum of up to 64 ranks is exact whatever order the backend adds in, so the one rounding is
/// the final narrowing, and results must match exactly. Used by `pstar comm-check` and the tests.
/// </summary>
public static class CommCheck
{
    public static readonly ScalarType[] Dtypes = { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 };
    private static readonly ReduceOp[] TensorOps = { ReduceOp.Sum, ReduceOp.Average, ReduceOp.Max, ReduceOp.Min };

    /// <summary>Runs the checks; every rank must call it with the same arguments. Returns the failures (empty: all passed).
    /// Exact-sum inputs need Size ≤ 8.</summary>
    public static IReadOnlyList<string> Run(ICommunicator comm, IReadOnlyList<long>? lengths = null)
    {
        var failures = new List<string>();
        lengths ??= new long[] { 1, 7, 1000, 4099 };
        int checks = 0;
        void Expect(bool ok, string what)
        {
            checks++;
            if (!ok) failures.Add(what);
        }

        foreach (var dtype in Dtypes)
        foreach (long n in lengths)
        {
            using var scope = NewDisposeScope();
            string tag = $"{dtype} n={n}";
            int caseId = (int)n * 31 + (int)dtype;

            // AllGather, separate output and in-place (the input is this rank's slice of the output).
            var input = Input(comm.Rank, caseId, dtype, n);
            var expected = cat(Enumerable.Range(0, comm.Size).Select(r => Input(r, caseId, dtype, n)).ToArray(), 0);
            var output = full(comm.Size * n, -7, dtype);
            comm.AllGather(input, output);
            Expect(Same(output, expected), $"AllGather {tag}");
            var inPlace = full(comm.Size * n, -7, dtype);
            var mine = inPlace.narrow(0, comm.Rank * n, n);
            mine.copy_(input);
            comm.AllGather(mine, inPlace);
            Expect(Same(inPlace, expected), $"AllGather in place {tag}");

            foreach (var op in TensorOps)
            {
                int opCase = caseId * 7 + (int)op;
                var full1 = Input(comm.Rank, opCase, dtype, comm.Size * n);
                var reference = Reference(Enumerable.Range(0, comm.Size).Select(r => Input(r, opCase, dtype, comm.Size * n)).ToArray(), op, dtype);

                var rs = full(n, -7, dtype);
                comm.ReduceScatter(full1, rs, op);
                Expect(Same(rs, reference.narrow(0, comm.Rank * n, n)), $"ReduceScatter {op} {tag}");

                var ar = full1.clone();
                comm.AllReduce(ar, op);
                Expect(Same(ar, reference), $"AllReduce {op} {tag}");

                int root = (int)(n % comm.Size);
                var red = comm.Rank == root ? full(comm.Size * n, -7, dtype) : null;
                comm.Reduce(full1, red, root, op);
                if (red is not null) Expect(Same(red, reference), $"Reduce {op} to rank {root} {tag}");
            }

            for (int root = 0; root < comm.Size; root++)
            {
                var b = comm.Rank == root ? Input(root, caseId + 1, dtype, n) : full(n, -7, dtype);
                comm.Broadcast(b, root);
                Expect(Same(b, Input(root, caseId + 1, dtype, n)), $"Broadcast from rank {root} {tag}");
            }
        }

        comm.Barrier();
        double v = comm.Rank * 0.75 + 1;
        double[] all = Enumerable.Range(0, comm.Size).Select(r => r * 0.75 + 1).ToArray();
        Expect(comm.AllReduce(v, ReduceOp.Sum) == all.Sum(), "AllReduce(double) Sum");
        Expect(comm.AllReduce(v, ReduceOp.Max) == all.Max(), "AllReduce(double) Max");
        Expect(comm.AllReduce(v, ReduceOp.Min) == all.Min(), "AllReduce(double) Min");
        Expect(comm.AllReduce(v, ReduceOp.Average) == all.Sum() / comm.Size, "AllReduce(double) Average");

        var bytes = comm.AllGather(Encoding.UTF8.GetBytes(new string('x', comm.Rank) + $"rank {comm.Rank}"));
        Expect(bytes.Length == comm.Size && Enumerable.Range(0, comm.Size).All(r => Encoding.UTF8.GetString(bytes[r]) == new string('x', r) + $"rank {r}"),
            "AllGather(bytes)");

        comm.AllAgree("same config", "the check's config");
        checks++;
        if (comm.Size > 1)
        {
            // The last rank disagrees: every rank must get an exception naming it.
            try
            {
                comm.AllAgree(comm.Rank == comm.Size - 1 ? "odd one" : "same", "the check's model");
                Expect(false, "AllAgree did not detect a differing rank");
            }
            catch (RankMismatchException e)
            {
                Expect(e.DifferingRanks.SequenceEqual(new[] { comm.Size - 1 }) && e.Message.Contains($"rank {comm.Size - 1}"),
                    $"AllAgree named the wrong ranks: {e.Message}");
            }
        }
        if (comm is MpiCommunicator mpi)
        {
            string error = mpi.ProvokeError();
            Expect(error.Contains("MPI_Bcast failed on rank") && error.Contains("MPI_ERR_ROOT", StringComparison.OrdinalIgnoreCase),
                $"an invalid MPI call should throw naming the call and MPI's error text, got: \"{error}\"");
        }
        comm.Barrier();
        CheckCount = checks;
        return failures;
    }

    /// <summary>True when both tensors have the same dtype, length and element values.</summary>
    public static bool Same(Tensor actual, Tensor expected)
    {
        if (actual.dtype != expected.dtype || actual.numel() != expected.numel()) return false;
        using var a = actual.flatten();
        using var e = expected.flatten();
        using var eq = a.eq(e);
        using var all = eq.all();
        return all.item<bool>();
    }

    /// <summary>How many comparisons the last <see cref="Run"/> on this thread made.</summary>
    [ThreadStatic] public static int CheckCount;

    /// <summary>Rank <paramref name="rank"/>'s deterministic input for a case: multiples of a power of two exact in the dtype.</summary>
    public static Tensor Input(int rank, int caseId, ScalarType dtype, long n)
    {
        // Seeded arithmetically: HashCode.Combine is randomized per process, and every rank must regenerate the same inputs.
        var random = new Random((int)((rank * 1_000_003L + caseId * 7_919L + 12_345L) & int.MaxValue));
        // Significant bits per value: fp32 21, fp16 11, bf16 8. fp32's 24 bits then hold every partial sum exactly
        // for up to 8 ranks with fp32 inputs and thousands with 16-bit inputs, whatever the order of addition.
        var (limit, scale) = dtype switch
        {
            ScalarType.Float32 => (1 << 20, 1.0f / 1024),
            ScalarType.Float16 => (2047, 1.0f / 64),
            _ => (255, 1.0f / 64),
        };
        var values = new float[n];
        for (long i = 0; i < n; i++) values[i] = random.Next(-limit, limit + 1) * scale;
        using var f = tensor(values);
        return f.to(dtype, copy: true);
    }

    /// <summary>The serial reference: widen to fp32, combine in rank order, divide for Average, narrow once.</summary>
    public static Tensor Reference(IReadOnlyList<Tensor> inputs, ReduceOp op, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var acc = inputs[0].to(ScalarType.Float32, copy: true);
        for (int r = 1; r < inputs.Count; r++)
        {
            var x = inputs[r].to(ScalarType.Float32, copy: true);
            acc = op switch
            {
                ReduceOp.Max => maximum(acc, x),
                ReduceOp.Min => minimum(acc, x),
                _ => acc + x,
            };
        }
        if (op == ReduceOp.Average) acc = acc / inputs.Count;
        return acc.to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Times the fp32 collectives on a buffer of <paramref name="bytes"/> (median of <paramref name="repeats"/>), in seconds.</summary>
    public static IReadOnlyList<(string Collective, double Seconds)> Measure(ICommunicator comm, long bytes, int repeats = 5)
    {
        using var scope = NewDisposeScope();
        long n = bytes / 4 / comm.Size * comm.Size;
        var big = ones(n);
        var shard = ones(n / comm.Size);
        var results = new List<(string, double)>();
        void Time(string name, Action body)
        {
            body(); // warm-up: first touch of MPI's and our buffers
            var times = new List<double>();
            for (int i = 0; i < repeats; i++)
            {
                comm.Barrier();
                var clock = Stopwatch.StartNew();
                body();
                times.Add(clock.Elapsed.TotalSeconds);
            }
            times.Sort();
            results.Add((name, comm.AllReduce(times[times.Count / 2], ReduceOp.Max)));
        }
        Time("AllGather", () => comm.AllGather(shard, big));
        Time("ReduceScatter", () => comm.ReduceScatter(big, shard));
        Time("AllReduce", () => comm.AllReduce(big));
        Time("Broadcast", () => comm.Broadcast(big, 0));
        return results;
    }
}
