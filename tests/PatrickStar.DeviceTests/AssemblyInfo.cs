using Xunit;

// One device, one libtorch: tests side by side would only fight over the cores and the device's memory.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
