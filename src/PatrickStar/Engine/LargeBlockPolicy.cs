namespace PatrickStar.Engine;

/// <summary>
/// Whether the chunk engine has the allocator return large freed blocks to the system
/// (<see cref="Runtime.NativeAllocator.ReturnLargeBlocks"/>). Returning them keeps the process's RSS within its budgets:
/// otherwise a large temporary freed in every step stays resident and the heap grows. But each step then touches those
/// temporaries afresh, and fresh pages are slow here: on the 6-layer, hidden-768 bf16 bench model the LM head's per-step
/// gradient (~230 MB) cost 0.55 s of page faults per step, 1.7x the plain trainer. So it is on when this rank's model
/// data takes at least half the memory the machine has available (the run is near the machine's limit, where RSS decides
/// whether it fits), off otherwise. <c>PSTAR_RETURN_LARGE_BLOCKS=1</c> (or <c>0</c>) forces the choice.
/// </summary>
public static class LargeBlockPolicy
{
    public const string Variable = "PSTAR_RETURN_LARGE_BLOCKS";

    public static bool ShouldReturn(long modelDataBytes, long? availableBytes, string? setting) => setting switch
    {
        "1" => true,
        "0" => false,
        _ => availableBytes is long available && modelDataBytes >= available / 2,
    };
}
