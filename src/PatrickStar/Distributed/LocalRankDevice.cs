namespace PatrickStar.Distributed;

/// <summary>
/// Several GPUs on one machine: under a launcher, rank r of a job takes CUDA device number (its local rank), the rank's
/// index among the job's processes on its own machine, so that N ranks on an N-GPU machine use one GPU each.
/// </summary>
public static class LocalRankDevice
{
    /// <summary>Where launchers put the local rank: Open MPI's mpirun (what `pstar launch` runs), MPICH's hydra, Slurm, torchrun-style.</summary>
    public static readonly IReadOnlyList<string> LocalRankVariables = new[] { "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK" };

    /// <summary>This process's rank among the job's processes on this machine; null when no launcher announced one.</summary>
    public static int? LocalRank(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        foreach (var name in LocalRankVariables)
            if (int.TryParse(environment(name), out int rank) && rank >= 0)
                return rank;
        return null;
    }

    /// <summary>
    /// The device this rank uses for a configured <paramref name="device"/>: "cuda" (and "auto" when CUDA is available)
    /// becomes "cuda:LOCAL_RANK" in a job of more than one rank; "cpu", an explicit "cuda:N" and a process started without
    /// a launcher are left as they are. Throws <see cref="ArgumentException"/> when this machine has too few GPUs.
    /// </summary>
    /// <param name="cudaDeviceCount">How many CUDA devices this process sees (injectable for tests; torch's count in a run).</param>
    public static string For(string device, int ranks, Func<string, string?>? environment, Func<int> cudaDeviceCount)
    {
        string spec = device.Trim().ToLowerInvariant();
        if (ranks <= 1 || (spec != "cuda" && spec != "auto")) return device;
        if (LocalRank(environment) is not int local) return device;
        int count = cudaDeviceCount();
        if (spec == "auto" && count == 0) return device;
        if (local >= count)
            throw new ArgumentException($"rank with local rank {local} has no GPU of its own: this machine shows {count} CUDA device(s) " +
                                        $"(CUDA_VISIBLE_DEVICES may hide some); start at most {count} rank(s) per machine, or use --device cpu.");
        return $"cuda:{local}";
    }
}
