namespace PatrickStar.Distributed;

/// <summary>A collective failed: a library error, a timeout, or an argument that does not fit the collective.</summary>
public class CommunicatorException : Exception
{
    public CommunicatorException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Another rank aborted the job (or left it) while this rank was waiting for it.</summary>
public sealed class CommunicatorAbortedException : CommunicatorException
{
    /// <summary>The rank that failed or aborted.</summary>
    public int FailedRank { get; }

    public CommunicatorAbortedException(int failedRank, string message) : base(message) => FailedRank = failedRank;
}

/// <summary>The ranks disagree about something that must be identical everywhere (config, model, data).</summary>
public sealed class RankMismatchException : CommunicatorException
{
    /// <summary>The ranks whose value differs from the majority's.</summary>
    public IReadOnlyList<int> DifferingRanks { get; }

    public RankMismatchException(IReadOnlyList<int> differingRanks, string message) : base(message) => DifferingRanks = differingRanks;
}

/// <summary>The MPI library is missing or cannot be used; the message names the library and the fix.</summary>
public sealed class MpiUnavailableException : CommunicatorException
{
    public MpiUnavailableException(string message, Exception? inner = null) : base(message, inner) { }
}
