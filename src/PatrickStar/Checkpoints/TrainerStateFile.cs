using System.Text.Json;
using System.Text.Json.Nodes;
using PatrickStar.Config;
using PatrickStar.Optimizer;
using PatrickStar.Training;

namespace PatrickStar.Checkpoints;

/// <summary>What a checkpoint's trainer-state.json holds.</summary>
public sealed record SavedState(int StepsDone, ulong BatchRngState, long OptimizerStep, LossScalerState Scaler,
    byte[] TorchRngState, int ScheduleHorizon, string ConfigJson);

/// <summary>
/// trainer-state.json: step, data position, random-generator states, Adam step, loss scaler, the learning-rate
/// horizon and the whole config. Reading checks every value's range, so that a damaged file is named instead of
/// failing later (a negative step, an Adam step that makes NaN, a generator state libtorch would abort on).
/// </summary>
public static class TrainerStateFile
{
    public const string Name = "trainer-state.json";

    public static string Json(TrainingConfig config, ITrainingEngine engine, Trainer trainer)
    {
        using var rng = TorchSharp.torch.Generator.Default.get_state();
        var scaler = engine.Scaler.State;
        var state = new JsonObject
        {
            ["steps_done"] = trainer.StepsDone,
            ["batch_rng_state"] = trainer.Position.BatchRngState.ToString(),
            ["optimizer_step"] = engine.OptimizerStepCount,
            ["loss_scaler"] = new JsonObject
            {
                ["scale"] = scaler.Scale, ["clean_steps"] = scaler.CleanSteps, ["hysteresis_left"] = scaler.HysteresisLeft,
                ["dynamic"] = engine.Scaler.IsDynamic,
            },
            ["torch_rng_state"] = Convert.ToBase64String(rng.bytes.ToArray()),
            ["lr_schedule_horizon"] = config.Scheduler.TotalSteps ?? config.Steps,
            ["engine"] = engine.Name,
            ["saved_utc"] = DateTime.UtcNow.ToString("O"),
            ["config"] = JsonNode.Parse(ConfigLoader.ToJson(config)),
        };
        return state.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Reads and range-checks a state file; <paramref name="manifestStep"/> (if recorded) must equal its steps_done.</summary>
    public static SavedState Read(string path, long? manifestStep)
    {
        if (!File.Exists(path)) throw new CheckpointException($"{path} is missing: the checkpoint has no trainer state. Use an earlier checkpoint.");
        CheckpointException Bad(string key, string problem) =>
            new($"{path}: \"{key}\" {problem}; the checkpoint is damaged: use an earlier one.");
        try
        {
            var s = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw Bad("(root)", "must be a JSON object");
            int steps = Get<int>(s, "steps_done");
            if (steps < 0) throw Bad("steps_done", $"is {steps}; it must be >= 0");
            if (manifestStep is long step && step != steps) throw Bad("steps_done", $"is {steps} but the manifest says step {step}");
            long adamStep = Get<long>(s, "optimizer_step");
            // Adam's step never runs ahead of the trainer's (fp16 overflow skips make it lag).
            if (adamStep < 0 || adamStep > steps) throw Bad("optimizer_step", $"is {adamStep}; it must be between 0 and steps_done = {steps}");
            var sc = s["loss_scaler"] as JsonObject ?? throw Bad("loss_scaler", "is missing or not an object");
            double scale = Get<double>(sc, "scale");
            int clean = Get<int>(sc, "clean_steps"), hysteresis = Get<int>(sc, "hysteresis_left");
            if (!double.IsFinite(scale) || scale <= 0) throw Bad("loss_scaler.scale", $"is {scale}; it must be a positive number");
            if (clean < 0 || hysteresis < 0) throw Bad("loss_scaler", "has a negative clean_steps or hysteresis_left");
            int horizon = Get<int>(s, "lr_schedule_horizon");
            if (horizon < 1) throw Bad("lr_schedule_horizon", $"is {horizon}; it must be >= 1");
            byte[] rng = Convert.FromBase64String(Get<string>(s, "torch_rng_state"));
            if (rng.Length == 0) throw Bad("torch_rng_state", "is empty");
            var config = s["config"] as JsonObject ?? throw Bad("config", "is missing or not an object");
            return new SavedState(steps, ulong.Parse(Get<string>(s, "batch_rng_state")), adamStep,
                new LossScalerState(scale, clean, hysteresis), rng, horizon, config.ToJsonString());
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or OverflowException)
        {
            throw new CheckpointException($"{path} is damaged or incomplete ({e.Message}); use an earlier checkpoint.", e);
        }

        T Get<T>(JsonObject o, string key) =>
            (o[key] ?? throw Bad(key, "is missing")).GetValue<T>();
    }

    /// <summary>The config a checkpoint was saved with, as JSON (for comparison), or null when its state cannot be read.</summary>
    public static string? TryReadConfig(string checkpointDir)
    {
        try
        {
            var s = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpointDir, Name))) as JsonObject;
            return (s?["config"] as JsonObject)?.ToJsonString();
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
