using System.Diagnostics;
using PatrickStar.Distributed;
using PatrickStar.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Distributed;

/// <summary>The in-process communicator (ranks as threads) against serial references, and its failure behaviour.</summary>
public class InProcessCommunicatorTests
{
    public InProcessCommunicatorTests() => TorchRuntime.EnsureLoaded();

    public static TheoryData<int, ScalarType> RanksAndDtypes()
    {
        var data = new TheoryData<int, ScalarType>();
        foreach (int n in new[] { 1, 2, 3, 4 })
        foreach (var d in new[] { ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16 })
            data.Add(n, d);
        return data;
    }

    /// <summary>Rank r's input for a case: random normal values rounded to the dtype (not exact sums: the narrowing matters).</summary>
    private static Tensor Data(int rank, int caseId, long n, ScalarType dtype)
    {
        using var g = new Generator((ulong)(1000 * caseId + rank));
        using var x = randn(n, generator: g);
        return x.to(dtype, copy: true);
    }

    /// <summary>Serial reference: widen each rank's input to fp32, combine in rank order, divide for Average, narrow once.</summary>
    private static Tensor Expected(int ranks, Func<int, Tensor> input, ReduceOp op, ScalarType dtype)
    {
        var acc = input(0).to(ScalarType.Float32, copy: true);
        for (int r = 1; r < ranks; r++)
        {
            using var x = input(r).to(ScalarType.Float32, copy: true);
            var next = op switch { ReduceOp.Max => maximum(acc, x), ReduceOp.Min => minimum(acc, x), _ => acc + x };
            acc.Dispose();
            acc = next;
        }
        if (op == ReduceOp.Average) acc.div_(ranks);
        using (acc) return acc.to(dtype, copy: true);
    }

    [Theory]
    [MemberData(nameof(RanksAndDtypes))]
    public void EveryCollectiveMatchesTheSerialReference(int ranks, ScalarType dtype)
    {
        const long n = 13; // odd, and not a multiple of any group size
        InProcessCommunicator.Run(ranks, comm =>
        {
            using var scope = NewDisposeScope();
            int me = comm.Rank;

            var gathered = full(ranks * n, float.NaN, dtype);
            comm.AllGather(Data(me, 1, n, dtype), gathered);
            Assert.True(gathered.Same(cat(Enumerable.Range(0, ranks).Select(r => Data(r, 1, n, dtype)).ToArray())), "AllGather");

            var inPlace = zeros(ranks * n, dtype);
            var mine = inPlace.narrow(0, me * n, n);
            mine.copy_(Data(me, 2, n, dtype));
            comm.AllGather(mine, inPlace);
            Assert.True(inPlace.Same(cat(Enumerable.Range(0, ranks).Select(r => Data(r, 2, n, dtype)).ToArray())), "AllGather in place");

            foreach (var op in new[] { ReduceOp.Sum, ReduceOp.Average, ReduceOp.Max, ReduceOp.Min })
            {
                int c = 10 + (int)op;
                var expected = Expected(ranks, r => Data(r, c, ranks * n, dtype), op, dtype);

                var shard = full(n, float.NaN, dtype);
                comm.ReduceScatter(Data(me, c, ranks * n, dtype), shard, op);
                Assert.True(shard.Same(expected.narrow(0, me * n, n)), $"ReduceScatter {op}");

                var buffer = Data(me, c, ranks * n, dtype);
                comm.AllReduce(buffer, op);
                Assert.True(buffer.Same(expected), $"AllReduce {op}");

                int root = ranks - 1;
                var output = me == root ? full(ranks * n, float.NaN, dtype) : null;
                comm.Reduce(Data(me, c, ranks * n, dtype), output, root, op);
                if (output is not null) Assert.True(output.Same(expected), $"Reduce {op}");
            }

            for (int root = 0; root < ranks; root++)
            {
                var b = me == root ? Data(root, 30, n, dtype) : zeros(n, dtype);
                comm.Broadcast(b, root);
                Assert.True(b.Same(Data(root, 30, n, dtype)), $"Broadcast from {root}");
            }
            comm.Barrier();
        });
    }

    [Fact]
    public void LowPrecisionSumsWidenThenRoundToNearestEven()
    {
        // 1 + 2^-8 lies halfway between the bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
        // (1 + 2^-7) + 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6.
        // fp16 alike one binary place further (its ulp at 1 is 2^-10).
        var results = InProcessCommunicator.Run(2, comm =>
        {
            using var b = comm.Rank == 0 ? tensor(new[] { 1f, 1 + 1f / 128, 3f }).to(ScalarType.BFloat16) : tensor(new[] { 1f / 256, 1f / 256, 1f / 256 }).to(ScalarType.BFloat16);
            using var h = comm.Rank == 0 ? tensor(new[] { 1f, 1 + 1f / 1024, 3f }).to(ScalarType.Float16) : tensor(new[] { 1f / 2048, 1f / 2048, 1f / 2048 }).to(ScalarType.Float16);
            comm.AllReduce(b);
            comm.AllReduce(h);
            using var bf = b.to(ScalarType.Float32);
            using var hf = h.to(ScalarType.Float32);
            return (bf.data<float>().ToArray(), hf.data<float>().ToArray());
        });
        foreach (var (bf16, fp16) in results)
        {
            Assert.Equal(new[] { 1f, 1 + 1f / 64, 3f }, bf16); // 3 + 2^-8 rounds to 3 (the ulp at 3 is 2^-6)
            Assert.Equal(new[] { 1f, 1 + 1f / 512, 3f }, fp16); // 3 + 2^-11 rounds to 3 (the ulp at 3 is 2^-9)
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void CommCheckPassesOnEveryGroupSize(int ranks)
    {
        var failures = InProcessCommunicator.Run(ranks, comm => CommCheck.Run(comm, new long[] { 1, 7, 130 }));
        Assert.All(failures, f => Assert.Empty(f));
    }

    [Fact]
    public void ScalarAllReduce()
    {
        var results = InProcessCommunicator.Run(3, comm =>
        {
            double v = new[] { 2.5, -1.0, 7.25 }[comm.Rank];
            return (comm.AllReduce(v, ReduceOp.Sum), comm.AllReduce(v, ReduceOp.Max), comm.AllReduce(v, ReduceOp.Min), comm.AllReduce(v, ReduceOp.Average));
        });
        Assert.All(results, r => Assert.Equal((8.75, 7.25, -1.0, 8.75 / 3), r));
    }

    [Fact]
    public void AllAgreeNamesTheRankThatDiffers()
    {
        var ex = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(4, comm =>
            comm.AllAgree(comm.Rank == 2 ? "config-hash-B" : "config-hash-A", "the config hash")));
        Assert.Equal(4, ex.InnerExceptions.Count); // every rank learns of it, not only the odd one
        Assert.All(ex.InnerExceptions, e =>
        {
            // A rank either finds the mismatch itself or, when a faster rank has already aborted the job over it,
            // is stopped with that rank's message (as MPI_Abort would): either way the differing rank is named.
            if (e is RankMismatchException mismatch) Assert.Equal(new[] { 2 }, mismatch.DifferingRanks);
            else Assert.IsType<CommunicatorAbortedException>(e);
            Assert.Contains("rank 2 has \"config-hash-B\"", e.Message);
            Assert.Contains("the config hash", e.Message);
        });
        Assert.Contains(ex.InnerExceptions, e => e is RankMismatchException);
        InProcessCommunicator.Run(3, comm => comm.AllAgree("same", "x")); // agreement passes
    }

    [Fact]
    public void ARankThatThrowsStopsTheOthersWithItsName()
    {
        var clock = Stopwatch.StartNew();
        var ex = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(3, comm =>
        {
            using var buffer = ones(5);
            comm.AllReduce(buffer);
            if (comm.Rank == 1) throw new InvalidOperationException("out of data");
            comm.AllReduce(buffer); // ranks 0 and 2 wait here for rank 1
        }, timeout: TimeSpan.FromSeconds(60)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the others should stop at once, took {clock.Elapsed}");
        Assert.Equal(3, ex.InnerExceptions.Count);
        var others = ex.InnerExceptions.OfType<CommunicatorAbortedException>().ToList();
        Assert.Equal(2, others.Count);
        Assert.All(others, e =>
        {
            Assert.Equal(1, e.FailedRank);
            Assert.Contains("rank 1 aborted the job", e.Message);
            Assert.Contains("out of data", e.Message);
        });
    }

    [Fact]
    public void APartnerThatNeverArrivesTimesOutNamingIt()
    {
        var comms = InProcessCommunicator.CreateGroup(3, TimeSpan.FromMilliseconds(300));
        var clock = Stopwatch.StartNew();
        var waiter = new Thread(() => { try { comms[2].Barrier(); } catch (CommunicatorException) { } });
        waiter.Start();
        var ex = Assert.Throws<CommunicatorAbortedException>(() => comms[0].Barrier()); // rank 1 never calls
        waiter.Join();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        Assert.Equal(1, ex.FailedRank);
        Assert.Contains("for rank 1, which never arrived", ex.Message);
        // The group stays failed: later calls fail at once instead of waiting again.
        Assert.Throws<CommunicatorAbortedException>(() => comms[2].Barrier());
    }

    [Fact]
    public void ARankThatLeavesWakesTheOthers()
    {
        var comms = InProcessCommunicator.CreateGroup(2, TimeSpan.FromSeconds(60));
        var clock = Stopwatch.StartNew();
        var leaver = new Thread(() => { Thread.Sleep(100); comms[1].Dispose(); });
        leaver.Start();
        var ex = Assert.Throws<CommunicatorAbortedException>(() => comms[0].Barrier());
        leaver.Join();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        Assert.Contains("rank 1 left the group", ex.Message);
    }

    [Fact]
    public void MismatchedCallsFailOnEveryRank()
    {
        var ex = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(2, comm =>
        {
            using var buffer = ones(comm.Rank == 0 ? 5 : 6);
            comm.AllReduce(buffer);
        }));
        Assert.All(ex.InnerExceptions, e => Assert.Contains("rank 1 with 6 elements", e.Message));
    }

    [Fact]
    public void ManyCollectivesInARowStayInStep()
    {
        // Fast ranks must not overtake slow ones between rendezvous: each AllReduce sees exactly its own round's values.
        var sums = InProcessCommunicator.Run(4, comm =>
        {
            var seen = new List<float>();
            for (int round = 0; round < 200; round++)
            {
                using var b = full(3 + round % 5, (float)(round * 10 + comm.Rank));
                comm.AllReduce(b);
                using var first = b[0];
                seen.Add(first.item<float>());
                if (round % 7 == comm.Rank) Thread.Yield();
            }
            return seen;
        });
        var expected = Enumerable.Range(0, 200).Select(round => (float)(4 * round * 10 + 0 + 1 + 2 + 3)).ToList();
        Assert.All(sums, s => Assert.Equal(expected, s));
    }

    [Fact]
    public void DifferentCollectivesOnDifferentRanksFailEverywhere()
    {
        var ex = Assert.Throws<AggregateException>(() => InProcessCommunicator.Run(2, comm =>
        {
            if (comm.Rank == 0) comm.Barrier();
            else comm.AllReduce(1.0, ReduceOp.Sum);
        }));
        Assert.Equal(2, ex.InnerExceptions.Count);
        Assert.All(ex.InnerExceptions, e => Assert.Contains("the ranks are in different collectives", e.Message));
    }

    [Fact]
    public void WrongBufferSizesAreRefusedWithTheExpectedSize()
    {
        var comm = InProcessCommunicator.CreateGroup(2)[0]; // arguments are checked before any rendezvous
        using var input = ones(4);
        using var output = ones(6);
        var e = Assert.Throws<ArgumentException>(() => comm.AllGather(input, output));
        Assert.Contains("it must have Size × input = 2 × 4 = 8", e.Message);
        using var ints = ones(4, ScalarType.Int32);
        Assert.Contains("only Float32, BFloat16 and Float16", Assert.Throws<ArgumentException>(() => comm.AllReduce(ints)).Message);
        using var strided = ones(4, 4).t();
        Assert.Contains("contiguous", Assert.Throws<ArgumentException>(() => comm.AllReduce(strided)).Message);
    }
}
