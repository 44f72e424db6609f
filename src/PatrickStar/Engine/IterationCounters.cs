namespace PatrickStar.Engine;

/// <summary>What the current training iteration has done so far; the parts of the engine add to it, the statistics report it.</summary>
internal sealed class IterationCounters
{
    public long BytesToDevice, BytesToHost, Moves, Evictions, PeakDevice, PeakDeviceModel, PeakDeviceNonModel, PeakNonModel, CommunicatedBytes, Collectives;
    public double CommunicationSeconds;

    public void Reset()
    {
        BytesToDevice = BytesToHost = Moves = Evictions = PeakDevice = PeakDeviceModel = PeakDeviceNonModel = PeakNonModel = CommunicatedBytes = Collectives = 0;
        CommunicationSeconds = 0;
    }
}
