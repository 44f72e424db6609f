using System.Text;

namespace PatrickStar.Distributed;

/// <summary>Checks built on the collectives.</summary>
public static class CommunicatorExtensions
{
    /// <summary>
    /// Throws <see cref="RankMismatchException"/> on every rank unless all ranks pass the same value
    /// (for example a hash of the config and the model). The message names the ranks that differ from
    /// the value most ranks hold (rank 0's on a tie) and what each holds.
    /// </summary>
    public static void AllAgree(this ICommunicator comm, string value, string what)
    {
        var all = comm.AllGather(Encoding.UTF8.GetBytes(value)).Select(b => Encoding.UTF8.GetString(b)).ToArray();
        if (all.All(v => v == all[0])) return;
        // The majority value is the reference; ties go to the value of the lowest rank holding it.
        var reference = all.Select((v, r) => (v, r)).GroupBy(x => x.v)
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Min(x => x.r)).First().Key;
        var differing = Enumerable.Range(0, all.Length).Where(r => all[r] != reference).ToList();
        var agreeing = Enumerable.Range(0, all.Length).Where(r => all[r] == reference).ToList();
        string detail = string.Join("; ", differing.Select(r => $"rank {r} has {Show(all[r])}"));
        throw new RankMismatchException(differing,
            $"the ranks disagree on {what}: rank{(differing.Count > 1 ? "s" : "")} {string.Join(", ", differing)} differ{(differing.Count > 1 ? "" : "s")} " +
            $"from rank{(agreeing.Count > 1 ? "s" : "")} {string.Join(", ", agreeing)} ({Show(reference)}): {detail}. " +
            "Every rank must run the same config and model; start them with the same arguments and files.");
    }

    private static string Show(string s) => s.Length <= 80 ? $"\"{s}\"" : $"\"{s[..77]}...\"";
}
