using System.Text.RegularExpressions;
using PatrickStar.Cli.Commands;
using PatrickStar.Models.Gpt;
using PatrickStar.Tests.Training;
using Spectre.Console;
using Xunit;

namespace PatrickStar.Tests.Cli;

/// <summary>The live panel: messages from any thread go through the display, onto lines of their own outside the panel's border.</summary>
public class LiveDisplayTests
{
    [Fact]
    public void AMessageFromAnotherThreadIsPrintedOnItsOwnLineAboveThePanel()
    {
        using var captured = new StringWriter();
        var oldError = Console.Error;
        using var error = new StringWriter();
        // The display's own console: replacing AnsiConsole.Console would also capture (and race with) other tests' output.
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(captured), Ansi = AnsiSupport.Yes, Interactive = InteractionSupport.Yes, ColorSystem = ColorSystemSupport.NoColors,
        });
        console.Profile.Width = 120;
        Console.SetError(error);
        try
        {
            var display = TrainingDisplay.AlwaysLive(console);
            using var run = GptRun.Create(TrainingHarness.Config(steps: 3), TrainingHarness.CyclicData());
            run.Trainer.StepCompleted += s =>
            {
                if (s.Step != 2) return;
                // As a signal handler does: another thread, while the panel is up.
                var signal = new Thread(() => display.Announce("SIGTERM: finishing the current step", error: true));
                signal.Start();
                signal.Join();
            };
            display.Run(run, CancellationToken.None);
        }
        finally
        {
            Console.SetError(oldError);
        }
        Assert.Equal("", error.ToString()); // not written around the display, where it would cross the panel
        string text = Regex.Replace(captured.ToString(), @"\x1b\[[0-9;?]*[A-Za-z]", "\n"); // cursor moves end a line
        var lines = text.Split('\n').Where(l => l.Contains("SIGTERM: finishing")).ToList();
        Assert.NotEmpty(lines);
        Assert.All(lines, l => Assert.DoesNotContain("│", l));
        Assert.Contains(text.Split('\n'), l => l.Trim() == "SIGTERM: finishing the current step"); // printed above the panel, alone
    }
}
