using Xunit.Sdk;
using Xunit.v3;

// One device, one libtorch: tests side by side would only fight over the cores and the device's memory.
[assembly: Parallelization(Mode = ParallelMode.None)]
