namespace PatrickStar.Profiling;

/// <summary>There is not enough memory for a run; the message has the bytes needed and available.</summary>
public sealed class InsufficientMemoryException : Exception
{
    public InsufficientMemoryException(string message) : base(message) { }
}
