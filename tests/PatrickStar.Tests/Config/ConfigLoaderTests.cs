using PatrickStar.Config;
using Xunit;

namespace PatrickStar.Tests.Config;

public sealed class ConfigLoaderTests : IDisposable
{
    private const string Source = "test.json";

    private readonly List<string> _tempFiles = new();

    public void Dispose()
    {
        foreach (string file in _tempFiles)
            File.Delete(file);
    }

    private string WriteTempFile(string contents)
    {
        string path = Path.Combine(Path.GetTempPath(), $"pstar-config-{Guid.NewGuid():N}.json");
        _tempFiles.Add(path);
        File.WriteAllText(path, contents);
        return path;
    }

    /// <summary>Parses and validates, returning the message of the expected failure.</summary>
    private static string ErrorOf(string json)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(ConfigLoader.Parse(json, Source), Source));
        Assert.Contains(Source, ex.Message);
        return ex.Message;
    }

    [Fact]
    public void FullFile_LoadsEveryValue()
    {
        string path = WriteTempFile("""
            {
              "model": {"preset": "gpt2", "vocab_size": 1000, "n_positions": 512, "n_layer": 3,
                        "n_embd": 96, "n_head": 4, "dropout": 0.05},
              "data": {"files": ["a.txt", "b.txt"], "validation_fraction": 0.2},
              "train_micro_batch_size_per_gpu": 4,
              "gradient_accumulation_steps": 3,
              "train_batch_size": 12,
              "seq_len": 256,
              "steps": 1000,
              "optimizer": {"type": "adam", "params": {"lr": 3e-4, "betas": [0.8, 0.99], "eps": 1e-6,
                            "weight_decay": 0.01, "no_decay_bias_and_norm": false}},
              "scheduler": {"type": "warmuplinear", "params": {"warmup_steps": 50, "total_steps": 900,
                            "min_lr_ratio": 0.05}},
              "bf16": {"enabled": true},
              "gradient_clipping": 0.5,
              "seed": 42,
              "eval": {"interval": 100, "batches": 4},
              "engine": "plain",
              "device": "cuda:1",
              "threads": 1
            }
            """);

        TrainingConfig c = ConfigLoader.Load(path);
        ConfigLoader.Validate(c, path);

        Assert.Equal("gpt2", c.Model.Preset);
        Assert.Equal(1000, c.Model.VocabSize);
        Assert.Equal(512, c.Model.ContextLength);
        Assert.Equal(3, c.Model.Layers);
        Assert.Equal(96, c.Model.Hidden);
        Assert.Equal(4, c.Model.Heads);
        Assert.Equal(0.05, c.Model.Dropout);
        Assert.Equal(new[] { "a.txt", "b.txt" }, c.Data.Files);
        Assert.Equal(0.2, c.Data.ValidationFraction);
        Assert.Equal(4, c.MicroBatchSize);
        Assert.Equal(3, c.GradientAccumulationSteps);
        Assert.Equal(256, c.SequenceLength);
        Assert.Equal(1000, c.Steps);
        Assert.Equal(OptimizerType.Adam, c.Optimizer.Type);
        Assert.Equal(3e-4, c.Optimizer.LearningRate);
        Assert.Equal(0.8, c.Optimizer.Beta1);
        Assert.Equal(0.99, c.Optimizer.Beta2);
        Assert.Equal(1e-6, c.Optimizer.Eps);
        Assert.Equal(0.01, c.Optimizer.WeightDecay);
        Assert.False(c.Optimizer.NoDecayOnBiasAndNorm);
        Assert.Equal(ScheduleType.WarmupLinear, c.Scheduler.Type);
        Assert.Equal(50, c.Scheduler.WarmupSteps);
        Assert.Equal(900, c.Scheduler.TotalSteps);
        Assert.Equal(0.05, c.Scheduler.MinLrRatio);
        Assert.Equal(Precision.Bf16, c.Precision);
        Assert.Equal(0.5, c.GradientClipping);
        Assert.Equal(42, c.Seed);
        Assert.Equal(100, c.Eval.Interval);
        Assert.Equal(4, c.Eval.Batches);
        Assert.Equal("plain", c.Engine);
        Assert.Equal("cuda:1", c.Device);
        Assert.Equal(1, c.Threads);
    }

    [Fact]
    public void EmptyObject_GivesDefaultsThatValidate()
    {
        TrainingConfig c = ConfigLoader.Parse("{}", Source);
        var defaults = new TrainingConfig();

        Assert.Equal(defaults.Model.Preset, c.Model.Preset);
        Assert.Equal(defaults.Steps, c.Steps);
        Assert.Equal(defaults.Optimizer.LearningRate, c.Optimizer.LearningRate);
        Assert.Equal(defaults.Scheduler.Type, c.Scheduler.Type);
        Assert.Equal(defaults.Precision, c.Precision);
        ConfigLoader.Validate(c);
    }

    [Fact]
    public void PartialSections_ChangeOnlyTheGivenKeys()
    {
        TrainingConfig c = ConfigLoader.Parse("""
            {"optimizer": {"params": {"lr": 0.01}}, "model": {"n_layer": 2}, "scheduler": {"type": "Constant"}}
            """, Source);
        var defaults = new TrainingConfig();

        Assert.Equal(0.01, c.Optimizer.LearningRate);
        Assert.Equal(defaults.Optimizer.Type, c.Optimizer.Type);
        Assert.Equal(defaults.Optimizer.Beta1, c.Optimizer.Beta1);
        Assert.Equal(defaults.Optimizer.WeightDecay, c.Optimizer.WeightDecay);
        Assert.Equal(2, c.Model.Layers);
        Assert.Equal(defaults.Model.Preset, c.Model.Preset);
        Assert.Null(c.Model.Hidden);
        Assert.Equal(ScheduleType.Constant, c.Scheduler.Type);
        Assert.Equal(defaults.Scheduler.WarmupSteps, c.Scheduler.WarmupSteps);
        Assert.Equal(defaults.Steps, c.Steps);
    }

    [Fact]
    public void WholeNumbersWrittenAsDecimals_NullablesAndComments_AreAccepted()
    {
        TrainingConfig c = ConfigLoader.Parse("""
            {
              // Comments and a trailing comma are tolerated.
              "steps": 3.0,
              "seed": 1e3,
              "model": {"preset": null, "dropout": null},
              "scheduler": {"params": {"total_steps": null}},
            }
            """, Source);

        Assert.Equal(3, c.Steps);
        Assert.Equal(1000, c.Seed);
        Assert.Null(c.Model.Preset);
        Assert.Null(c.Model.Dropout);
        Assert.Null(c.Scheduler.TotalSteps);
    }

    [Fact]
    public void UnknownKey_NamesThePathAndSuggestsTheNearestKey()
    {
        var ex = Assert.Throws<ConfigException>(() =>
            ConfigLoader.Parse("""{"optimizer": {"params": {"lrr": 0.1}}}""", Source));

        Assert.Contains("optimizer.params.lrr", ex.Message);
        Assert.Contains(Source, ex.Message);
        Assert.Contains("did you mean 'lr'?", ex.Message);
        Assert.Contains("lr, betas, eps, weight_decay, no_decay_bias_and_norm", ex.Message);
    }

    [Fact]
    public void MisplacedKey_SaysWhereItBelongs()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{"lr": 0.1}""", Source));

        Assert.Contains("'optimizer.params.lr'", ex.Message);
        Assert.Contains("Allowed top-level keys", ex.Message);
    }

    [Theory]
    [InlineData("""{"steps": "300"}""", "steps", "\"300\"", "an integer")]
    [InlineData("""{"model": {"n_layer": 3.5}}""", "model.n_layer", "3.5", "an integer")]
    [InlineData("""{"seed": 1.5}""", "seed", "1.5", "an integer")]
    [InlineData("""{"optimizer": {"params": {"lr": true}}}""", "optimizer.params.lr", "true", "a number")]
    [InlineData("""{"bf16": {"enabled": 1}}""", "bf16.enabled", "1", "true or false")]
    [InlineData("""{"device": 0}""", "device", "0", "a string")]
    [InlineData("""{"optimizer": {"type": "SGD"}}""", "optimizer.type", "\"SGD\"", "\"AdamW\", \"Adam\"")]
    [InlineData("""{"scheduler": {"type": 1}}""", "scheduler.type", "1", "\"WarmupCosine\"")]
    [InlineData("""{"data": {"files": "a.txt"}}""", "data.files", "\"a.txt\"", "an array of strings")]
    [InlineData("""{"data": {"files": ["a.txt", 7]}}""", "data.files[1]", "7", "a string")]
    [InlineData("""{"eval": 5}""", "eval", "5", "an object")]
    public void WrongType_NamesKeyValueAndExpectedType(string json, string key, string value, string expected)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));

        Assert.Contains($"{key} is {value}", ex.Message);
        Assert.Contains(expected, ex.Message);
        Assert.Contains(Source, ex.Message);
    }

    [Theory]
    [InlineData("""{"steps": 3000000000}""", "steps", "3000000000")]
    [InlineData("""{"threads": -1e10}""", "threads", "-1e10")]
    [InlineData("""{"seed": 1e30}""", "seed", "1e30")]
    public void IntegerOutOfRange_IsAnError(string json, string key, string value)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));

        Assert.Contains($"{key} is {value}", ex.Message);
        Assert.Contains("outside the integer range", ex.Message);
    }

    [Theory]
    [InlineData("""{"optimizer": null}""", "optimizer")]
    [InlineData("""{"optimizer": {"params": null}}""", "optimizer.params")]
    public void NullSection_IsAnError(string json, string key)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));

        Assert.Contains($"{key} is null", ex.Message);
    }

    [Fact]
    public void RepeatedKey_IsAnError()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{"steps": 1, "steps": 2}""", Source));

        Assert.Contains("steps appears more than once", ex.Message);
    }

    [Theory]
    [InlineData("""{"optimizer": {"params": {"betas": [0.9]}}}""", "[0.9]")]
    [InlineData("""{"optimizer": {"params": {"betas": [0.9, 0.95, 0.99]}}}""", "[0.9, 0.95, 0.99]")]
    [InlineData("""{"optimizer": {"params": {"betas": [0.9, "0.95"]}}}""", "[0.9, \"0.95\"]")]
    [InlineData("""{"optimizer": {"params": {"betas": 0.9}}}""", "0.9")]
    public void Betas_MustBeExactlyTwoNumbers(string json, string value)
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));

        Assert.Contains($"optimizer.params.betas is {value}", ex.Message);
        Assert.Contains("exactly two numbers", ex.Message);
    }

    [Fact]
    public void TrainBatchSize_MustMatchMicroBatchTimesAccumulation()
    {
        // Checked once the ranks are known (train_batch_size = micro batch * accumulation * ranks), not by Parse.
        TrainingConfig c = ConfigLoader.Parse("""
            {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "train_batch_size": 16}
            """, Source);
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Validate(c, Source, ranks: 1));

        Assert.Contains("train_batch_size is 16", ex.Message);
        Assert.Contains("train_micro_batch_size_per_gpu (4)", ex.Message);
        Assert.Contains("gradient_accumulation_steps (2)", ex.Message);
        Assert.Contains("= 8", ex.Message);
    }

    [Fact]
    public void TrainBatchSize_ThatMatches_IsAccepted()
    {
        TrainingConfig c = ConfigLoader.Parse("""
            {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2, "train_batch_size": 8}
            """, Source);

        Assert.Equal(4, c.MicroBatchSize);
        Assert.Equal(2, c.GradientAccumulationSteps);
    }

    [Theory]
    [InlineData("""{"train_micro_batch_size_per_gpu": 0}""", "train_micro_batch_size_per_gpu", "0")]
    [InlineData("""{"gradient_accumulation_steps": -2}""", "gradient_accumulation_steps", "-2")]
    [InlineData("""{"seq_len": 0}""", "seq_len", "0")]
    [InlineData("""{"steps": 0}""", "steps", "0")]
    [InlineData("""{"optimizer": {"params": {"lr": -0.001}}}""", "optimizer.params.lr", "-0.001")]
    [InlineData("""{"optimizer": {"params": {"lr": 0}}}""", "optimizer.params.lr", "0")]
    [InlineData("""{"optimizer": {"params": {"betas": [0.9, 1.0]}}}""", "optimizer.params.betas[1]", "1")]
    [InlineData("""{"optimizer": {"params": {"betas": [-0.1, 0.9]}}}""", "optimizer.params.betas[0]", "-0.1")]
    [InlineData("""{"optimizer": {"params": {"eps": 0}}}""", "optimizer.params.eps", "0")]
    [InlineData("""{"optimizer": {"params": {"weight_decay": -0.1}}}""", "optimizer.params.weight_decay", "-0.1")]
    [InlineData("""{"scheduler": {"params": {"warmup_steps": -1}}}""", "scheduler.params.warmup_steps", "-1")]
    [InlineData("""{"scheduler": {"params": {"total_steps": 0}}}""", "scheduler.params.total_steps", "0")]
    [InlineData("""{"scheduler": {"params": {"min_lr_ratio": 1.5}}}""", "scheduler.params.min_lr_ratio", "1.5")]
    [InlineData("""{"gradient_clipping": -1}""", "gradient_clipping", "-1")]
    [InlineData("""{"eval": {"interval": -5}}""", "eval.interval", "-5")]
    [InlineData("""{"eval": {"batches": 0}}""", "eval.batches", "0")]
    [InlineData("""{"data": {"validation_fraction": 0}}""", "data.validation_fraction", "0")]
    [InlineData("""{"data": {"validation_fraction": 0.6}}""", "data.validation_fraction", "0.6")]
    [InlineData("""{"data": {"files": ["a.txt", " "]}}""", "data.files[1]", "\" \"")]
    [InlineData("""{"model": {"n_layer": 0}}""", "model.n_layer", "0")]
    [InlineData("""{"model": {"vocab_size": -3}}""", "model.vocab_size", "-3")]
    [InlineData("""{"model": {"dropout": 1.0}}""", "model.dropout", "1")]
    [InlineData("""{"model": {"preset": ""}}""", "model.preset", "\"\"")]
    [InlineData("""{"engine": "zero3"}""", "engine", "\"zero3\"")]
    [InlineData("""{"device": "gpu"}""", "device", "\"gpu\"")]
    [InlineData("""{"device": "cuda:x"}""", "device", "\"cuda:x\"")]
    [InlineData("""{"threads": -1}""", "threads", "-1")]
    public void OutOfRange_NamesKeyAndValue(string json, string key, string value)
    {
        string message = ErrorOf(json);

        Assert.Contains($"{key} is {value}, but it must be", message);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    [InlineData("cuda:0")]
    [InlineData("cuda:12")]
    public void Device_AcceptsTheDocumentedForms(string device)
    {
        TrainingConfig c = ConfigLoader.Parse($$"""{"device": "{{device}}"}""", Source);

        ConfigLoader.Validate(c);
        Assert.Equal(device, c.Device);
    }

    [Fact]
    public void SequenceLongerThanContext_NamesBothKeys()
    {
        string message = ErrorOf("""{"seq_len": 512, "model": {"n_positions": 256}}""");

        Assert.Contains("seq_len is 512", message);
        Assert.Contains("model.n_positions, which is 256", message);
    }

    [Fact]
    public void HiddenNotDivisibleByHeads_NamesBothKeys()
    {
        string message = ErrorOf("""{"model": {"n_embd": 200, "n_head": 6}}""");

        Assert.Contains("model.n_embd is 200", message);
        Assert.Contains("model.n_head is 6", message);
    }

    [Fact]
    public void SeveralProblems_AreReportedTogether_OnePerLine()
    {
        string message = ErrorOf("""
            {"steps": 0, "optimizer": {"params": {"lr": -1}}, "eval": {"batches": 0}, "device": "tpu"}
            """);

        Assert.Contains("4 problems", message);
        Assert.Contains("steps is 0", message);
        Assert.Contains("optimizer.params.lr is -1", message);
        Assert.Contains("eval.batches is 0", message);
        Assert.Contains("device is \"tpu\"", message);
        Assert.Equal(5, message.Split('\n').Length);
    }

    [Fact]
    public void SeveralParseProblems_AreReportedTogether()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""
            {"stepz": 1, "seq_len": "64", "optimizer": {"params": {"betas": [1]}}}
            """, Source));

        Assert.Contains("3 problems", ex.Message);
        Assert.Contains("stepz", ex.Message);
        Assert.Contains("seq_len is \"64\"", ex.Message);
        Assert.Contains("optimizer.params.betas is [1]", ex.Message);
    }

    [Fact]
    public void InvalidJson_NamesFileLineAndPosition()
    {
        string path = WriteTempFile("{\n  \"steps\": 10,\n  \"seq_len\" 64\n}\n");

        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Load(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("line 3", ex.Message);
        Assert.Contains("position", ex.Message);
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(ex.InnerException);
    }

    [Fact]
    public void EmptyFile_IsAnError()
    {
        string path = WriteTempFile("  \n");

        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Load(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("empty", ex.Message);
    }

    [Fact]
    public void TopLevelMustBeAnObject()
    {
        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("[1, 2]", Source));

        Assert.Contains("[1, 2]", ex.Message);
        Assert.Contains("JSON object", ex.Message);
    }

    [Fact]
    public void MissingFile_NamesThePath()
    {
        string path = Path.Combine(Path.GetTempPath(), $"pstar-missing-{Guid.NewGuid():N}.json");

        var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Load(path));

        Assert.Contains(path, ex.Message);
        Assert.Contains("does not exist", ex.Message);
    }

    [Fact]
    public void Reference_CoversEveryKeyTheParserAccepts()
    {
        var keys = ConfigLoader.Reference.Select(r => r.Key).ToList();

        Assert.Equal(keys.Count, keys.Distinct().Count());
        Assert.Contains(ConfigLoader.Reference, r => r.Key == "optimizer.params.lr" && r.Default == "0.001");
        Assert.Contains(ConfigLoader.Reference, r => r.Key == "train_micro_batch_size_per_gpu" && r.Default == "8");
        Assert.All(ConfigLoader.Reference, r =>
        {
            Assert.False(string.IsNullOrWhiteSpace(r.Type));
            Assert.False(string.IsNullOrWhiteSpace(r.Meaning));
        });

        // An object is the wrong type for every leaf key: the parser must complain about the type, which proves
        // it knows the key (an unlisted key would be reported as unknown instead).
        // activation_checkpointing takes DeepSpeed's object with a warning (DeepSpeedConfigTests).
        foreach (string key in keys.Where(k => k != "activation_checkpointing"))
        {
            string[] parts = key.Split('.');
            string json = string.Concat(parts.Select(p => $"{{\"{p}\": ")) + "{}" + new string('}', parts.Length);
            var ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, Source));
            Assert.Contains($"{key} is {{}}, but it must be", ex.Message);
        }
    }

    [Fact]
    public void Engines_ListsThePlainEngine()
    {
        Assert.Contains("plain", ConfigLoader.Engines);
    }
}
