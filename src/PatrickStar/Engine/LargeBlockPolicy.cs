namespace PatrickStar.Engine;

/// <summary>
/// Whether the chunk engine has the allocator return large freed blocks to the system
/// (<see cref="Runtime.NativeAllocator.ReturnLargeBlocks"/>). Returning them keeps the process's RSS within its budgets:
/// otherwise a large temporary freed in every step stays resident and the heap grows. Each step then touches afresh the
/// large temporaries it makes; once the LM head's weight gradient ([V, h], ~230 MB a step on the 6-layer, hidden-768 bf16
/// bench model: 0.55 s of page faults) went into storage kept across steps, a step of the chunk engine makes none, so it is
/// always on. <c>PSTAR_RETURN_LARGE_BLOCKS=0</c> keeps them in the heap instead.
/// </summary>
public static class LargeBlockPolicy
{
    public const string Variable = "PSTAR_RETURN_LARGE_BLOCKS";

    public static bool ShouldReturn(string? setting) => setting != "0";
}
