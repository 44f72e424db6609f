using TorchSharp.Modules;

namespace PatrickStar.Chunks;

/// <summary>A model parameter under the chunk engine's management: its slot, its tensor state and its gradient's progress.</summary>
internal sealed class ManagedParameter
{
    public ManagedParameter(string name, Parameter parameter, long[] shape, TensorPlacement place, bool decay)
    {
        Name = name;
        Parameter = parameter;
        Shape = shape;
        Place = place;
        Decay = decay;
    }

    public string Name { get; }
    public Parameter Parameter { get; }
    public long[] Shape { get; }
    public TensorPlacement Place { get; }
    public bool Decay { get; }
    public TensorState State { get; private set; } = TensorState.Hold;
    public ParameterGradient Gradient { get; } = new();

    /// <summary>Changes the tensor state, refusing illegal transitions (<see cref="TensorTransitions"/>).</summary>
    public void MoveTo(TensorState to, string moment)
    {
        TensorTransitions.Check(State, to, Name, Place.Chunk, moment);
        State = to;
    }
}
