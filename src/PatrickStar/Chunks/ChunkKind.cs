namespace PatrickStar.Chunks;

/// <summary>What a chunk of a list holds.</summary>
public enum ChunkKind { Param, Master, Momentum, Variance, Gradient }
