namespace PatrickStar.Config;

/// <summary>
/// A configuration file or value is wrong. The message is meant for the person running the job: it names
/// the source, the offending key and value, and what to write instead. Several problems found together are
/// listed one per line.
/// </summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string message)
        : base(message)
    {
    }

    /// <summary>Keeps the underlying I/O or JSON error for logs; the message still stands on its own.</summary>
    public ConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
