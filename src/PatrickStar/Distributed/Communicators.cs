namespace PatrickStar.Distributed;

/// <summary>Picks the communicator for how this process was started.</summary>
public static class Communicators
{
    /// <summary>The job size a launcher announced through the environment, or null when none started this process.
    /// Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; MPICH's hydra (and Slurm's PMI) set PMI_SIZE.</summary>
    public static int? LauncherSize(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        foreach (var name in new[] { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" })
            if (int.TryParse(environment(name), out int size) && size >= 1)
                return size;
        return null;
    }

    /// <summary>
    /// An <see cref="MpiCommunicator"/> when a launcher started this process (Open MPI's library first,
    /// MPICH's when only it is installed), otherwise a one-rank <see cref="SingleProcessCommunicator"/>
    /// that needs no MPI library. Throws <see cref="MpiUnavailableException"/> with the fix when the
    /// launcher's library cannot be loaded.
    /// </summary>
    public static ICommunicator Create()
    {
        if (LauncherSize() is null) return new SingleProcessCommunicator();
        bool mpichLauncher = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is null;
        var names = mpichLauncher
            ? MpiLibrary.MpichNames.Concat(MpiLibrary.OpenMpiNames)
            : MpiLibrary.OpenMpiNames.Concat(MpiLibrary.MpichNames);
        var comm = MpiCommunicator.Open(names);
        if (LauncherSize() is int expected && comm.Size != expected)
        {
            string message = $"the environment announces a job of {expected} ranks (OMPI_COMM_WORLD_SIZE or PMI_SIZE) but MPI_COMM_WORLD has " +
                             $"{comm.Size} ({comm.Backend}). Either this process was not started by mpirun and the variable is stale (unset it), " +
                             "or the launcher and the loaded library belong to different MPI implementations: launch with the mpirun of the " +
                             "same MPI (Open MPI: apt-get install -y openmpi-bin libopenmpi-dev; then `pstar launch -n N -- ...`).";
            comm.Dispose();
            throw new MpiUnavailableException(message);
        }
        return comm;
    }
}
