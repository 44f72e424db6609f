using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;
using static TorchSharp.torch.nn;

namespace PatrickStar.Hooks;

/// <summary>
/// Activation checkpointing: runs a module without keeping its activations, and runs it again during
/// backward to get them. Saves memory (one input per block instead of every intermediate) at the cost of a
/// second forward. The random state is restored for the re-run, so dropout draws the same masks.
/// The module is re-run through <c>.call</c>, so parameter hooks (the chunk engine's) fire again in backward.
/// </summary>
public static class ActivationCheckpoint
{
    [ThreadStatic] private static int recomputing;

    /// <summary>True while a checkpointed module is being re-run inside backward (its uses are not new uses).</summary>
    public static bool IsRecomputing => recomputing > 0;

    public static Tensor Run(Module<Tensor, Tensor> module, Tensor input)
    {
        // No graph is being built (evaluation): nothing to recompute later.
        if (!is_grad_enabled()) return module.call(input);
        return CheckpointFunction.apply(input, new ModuleRef(module))[0];
    }

    internal sealed record ModuleRef(Module<Tensor, Tensor> Module);

    internal sealed class CheckpointFunction : MultiTensorFunction<CheckpointFunction>
    {
        public override string Name => "PatrickStar.Checkpoint";

        public override List<Tensor> forward(AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var module = ((ModuleRef)vars[1]).Module;
            ctx.save_for_backward(new List<Tensor> { x });
            ctx.save_data("module", vars[1]);
            ctx.save_data("rng", new RngState(get_rng_state().DetachFromDisposeScope()));
            Tensor y;
            using (no_grad()) y = module.call(x);
            return ParameterBackward.Outputs(ctx, y);
        }

        public override List<Tensor> backward(AutogradContext ctx, List<Tensor> grads)
        {
            try
            {
                var x = ctx.get_saved_variables()[0];
                var module = ((ModuleRef)ctx.get_data("module")).Module;
                var rng = (RngState)ctx.get_data("rng");
                var g = ParameterBackward.OutputGradient(ctx, grads);
                using var current = get_rng_state();
                set_rng_state(rng.State);
                Tensor dx;
                // The re-run's activations live only as long as this block: that is the memory checkpointing saves.
                using (var scope = NewDisposeScope())
                using (enable_grad())
                {
                    var xd = x.detach().requires_grad_(true);
                    Tensor y;
                    recomputing++;
                    try { y = module.call(xd); }
                    finally { recomputing--; }
                    autograd.backward(new[] { y }, new[] { g });
                    dx = xd.grad!.MoveToOuterDisposeScope();
                }
                set_rng_state(current);
                rng.State.Dispose();
                BackwardHandles.Release([x, g, .. grads]);
                return BackwardHandles.Return(new List<Tensor> { dx, null! });
            }
            catch (Exception e)
            {
                ParameterEvents.Capture(e);
                return new List<Tensor> { null!, null! };
            }
        }
    }

    private sealed record RngState(Tensor State);
}
