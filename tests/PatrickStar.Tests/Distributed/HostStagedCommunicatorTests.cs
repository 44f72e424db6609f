using PatrickStar.Distributed;
using PatrickStar.Engine;
using PatrickStar.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace PatrickStar.Tests.Distributed;

/// <summary>
/// Collectives of device tensors go through host buffers (MPI moves host memory). No device here: staging is forced on
/// CPU tensors, which exercises the same copies; results must equal the unstaged collectives, and the staged bytes are exact.
/// </summary>
public class HostStagedCommunicatorTests
{
    public HostStagedCommunicatorTests() => TorchRuntime.EnsureLoaded();

    private static float[] Values(Tensor t) => t.data<float>().ToArray();

    [Fact]
    public void StagedCollectivesGiveTheUnstagedResultsAndCountEveryByteBothWays()
    {
        const int n = 6, ranks = 2;
        var results = InProcessCommunicator.Run(ranks, comm =>
        {
            var counters = new CollectiveStaging();
            int rented = 0, returned = 0;
            var staged = new HostStagedCommunicator(comm, counters, (dtype, count) => { rented++; return empty(count, dtype: dtype); },
                t => { returned++; t.Dispose(); }, needsStaging: _ => true);
            int r = comm.Rank;
            using var scope = NewDisposeScope();

            // All-gather in the in-place form: this rank's slice of the output is the input.
            var gathered = zeros(n * ranks);
            using (var mine = gathered.narrow(0, r * n, n)) mine.copy_(full(n, r + 1f));
            using (var mine = gathered.narrow(0, r * n, n)) staged.AllGather(mine, gathered);
            var afterGather = (counters.ToHostBytes, counters.ToDeviceBytes);

            var input = arange(n * ranks, dtype: ScalarType.Float32) * (r + 1);
            var scattered = zeros(n);
            staged.ReduceScatter(input, scattered, ReduceOp.Sum);

            var broadcast = r == 1 ? arange(n, dtype: ScalarType.Float32) : zeros(n);
            staged.Broadcast(broadcast, root: 1);

            var reduced = zeros(n);
            staged.Reduce(full(n, r + 2f), r == 0 ? reduced : null, root: 0, ReduceOp.Average);

            var summed = full(n, r + 1f);
            staged.AllReduce(summed);

            double staging = counters.StagingSeconds, inComm = counters.CommunicatorSeconds;
            return (Gathered: Values(gathered), AfterGather: afterGather, Scattered: Values(scattered), Broadcast: Values(broadcast), Reduced: Values(reduced),
                Summed: Values(summed), counters.ToHostBytes, counters.ToDeviceBytes, Staging: staging, InComm: inComm, Rented: rented, Returned: returned);
        }, TimeSpan.FromSeconds(30));

        for (int r = 0; r < ranks; r++)
        {
            var x = results[r];
            Assert.Equal(Enumerable.Repeat(1f, n).Concat(Enumerable.Repeat(2f, n)), x.Gathered);
            Assert.Equal((n * 4L, n * ranks * 4L), x.AfterGather); // this rank's part to the host, the whole output back
            Assert.Equal(Enumerable.Range(r * n, n).Select(i => i * 3f), x.Scattered); // i x 1 + i x 2
            Assert.Equal(Enumerable.Range(0, n).Select(i => (float)i), x.Broadcast);
            Assert.Equal(r == 0 ? Enumerable.Repeat(2.5f, n) : Enumerable.Repeat(0f, n), x.Reduced);
            Assert.Equal(Enumerable.Repeat(3f, n), x.Summed);
            // To the host: gather n, reduce-scatter 2n, broadcast n at the root only, reduce n, all-reduce n.
            long toHost = 4L * (n + 2 * n + (r == 1 ? n : 0) + n + n);
            // Back: gather 2n, reduce-scatter n, broadcast n off the root, reduce n at the root, all-reduce n.
            long toDevice = 4L * (2 * n + n + (r == 1 ? 0 : n) + (r == 0 ? n : 0) + n);
            Assert.Equal((toHost, toDevice), (x.ToHostBytes, x.ToDeviceBytes));
            Assert.True(x.Staging > 0 && x.InComm > 0, $"staging {x.Staging} s, communicator {x.InComm} s");
            Assert.Equal(x.Rented, x.Returned);
        }
    }

    [Fact]
    public void HostTensorsPassStraightThrough()
    {
        var results = InProcessCommunicator.Run(2, comm =>
        {
            var counters = new CollectiveStaging();
            var staged = new HostStagedCommunicator(comm, counters, (_, _) => throw new InvalidOperationException("nothing is staged on the host"));
            using var buffer = full(4, comm.Rank + 1f);
            staged.AllReduce(buffer);
            return (Values: Values(buffer), Counts: (counters.ToHostBytes, counters.ToDeviceBytes, counters.StagingSeconds, counters.CommunicatorSeconds > 0));
        }, TimeSpan.FromSeconds(30));
        foreach (var x in results)
        {
            Assert.Equal(new[] { 3f, 3f, 3f, 3f }, x.Values);
            Assert.Equal((0L, 0L, 0.0, true), x.Counts);
        }
    }
}
