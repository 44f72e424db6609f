using Xunit;

// Torch already uses every core for one operation; test classes running side by side would only
// fight over them (and over memory measurements).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
