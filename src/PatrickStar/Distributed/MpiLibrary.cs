using System.Runtime.InteropServices;
using System.Text;

namespace PatrickStar.Distributed;

/// <summary>
/// Our own minimal binding to an MPI library: the C entry points resolved with NativeLibrary and
/// called through unmanaged function pointers. Open MPI's predefined handles (MPI_COMM_WORLD,
/// MPI_FLOAT, MPI_SUM, ...) are the addresses of exported globals; MPICH's are integer constants
/// (taken from MPICH's mpi.h). Handles are passed as pointer-sized integers: on x86-64 and arm64 an
/// MPICH int handle in a 64-bit slot reads the same as an int, so one set of signatures serves both.
/// </summary>
internal sealed unsafe class MpiLibrary
{
    public const int ThreadSerialized = 2;
    public const int ThreadMultiple = 3;

    /// <summary>Sonames tried, Open MPI first (the one this project is developed and tested with).</summary>
    public static readonly string[] OpenMpiNames = { "libmpi.so.40", "libmpi.so" };
    public static readonly string[] MpichNames = { "libmpich.so.12", "libmpi.so.12" };

    public readonly string Name;
    public readonly bool IsOpenMpi;

    public readonly nint CommWorld, Float, Double, Byte, Short, Int, OpSum, OpMax, OpMin, ErrorsReturn, InPlace;

    public readonly delegate* unmanaged<int*, byte***, int, int*, int> Init_thread;
    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, int> Finalized;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<nint, int*, int> Comm_rank;
    public readonly delegate* unmanaged<nint, int*, int> Comm_size;
    public readonly delegate* unmanaged<nint, nint, int> Comm_set_errhandler;
    public readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> Allgather;
    public readonly delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int> Allgatherv;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Reduce_scatter_block;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce;
    public readonly delegate* unmanaged<void*, int, nint, int, nint, int> Bcast;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, int, nint, int> Reduce;
    public readonly delegate* unmanaged<nint, int> Barrier;
    public readonly delegate* unmanaged<nint, int, int> Abort;
    public readonly delegate* unmanaged<int, byte*, int*, int> Error_string;
    public readonly delegate* unmanaged<byte*, int*, int> Get_library_version;

    private MpiLibrary(nint lib, string name)
    {
        Name = name;
        IsOpenMpi = NativeLibrary.TryGetExport(lib, "ompi_mpi_comm_world", out _);
        if (IsOpenMpi)
        {
            CommWorld = Export(lib, "ompi_mpi_comm_world");
            Float = Export(lib, "ompi_mpi_float");
            Double = Export(lib, "ompi_mpi_double");
            Byte = Export(lib, "ompi_mpi_byte");
            Short = Export(lib, "ompi_mpi_short");
            Int = Export(lib, "ompi_mpi_int");
            OpSum = Export(lib, "ompi_mpi_op_sum");
            OpMax = Export(lib, "ompi_mpi_op_max");
            OpMin = Export(lib, "ompi_mpi_op_min");
            ErrorsReturn = Export(lib, "ompi_mpi_errors_return");
            InPlace = 1; // Open MPI's mpi.h: #define MPI_IN_PLACE ((void *) 1)
        }
        else
        {
            // MPICH's mpi.h (not exercised by this project's tests: only Open MPI is installed here).
            CommWorld = 0x44000000;
            Float = 0x4c00040a;
            Double = 0x4c00080b;
            Byte = 0x4c00010d;
            Short = 0x4c000203;
            Int = 0x4c000405;
            OpMax = 0x58000001;
            OpMin = 0x58000002;
            OpSum = 0x58000003;
            ErrorsReturn = 0x54000001;
            InPlace = -1; // #define MPI_IN_PLACE (void *) -1
        }
        Init_thread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export(lib, "MPI_Init_thread");
        Initialized = (delegate* unmanaged<int*, int>)Export(lib, "MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Export(lib, "MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)Export(lib, "MPI_Finalize");
        Comm_rank = (delegate* unmanaged<nint, int*, int>)Export(lib, "MPI_Comm_rank");
        Comm_size = (delegate* unmanaged<nint, int*, int>)Export(lib, "MPI_Comm_size");
        Comm_set_errhandler = (delegate* unmanaged<nint, nint, int>)Export(lib, "MPI_Comm_set_errhandler");
        Allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Export(lib, "MPI_Allgather");
        Allgatherv = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int>)Export(lib, "MPI_Allgatherv");
        Reduce_scatter_block = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export(lib, "MPI_Reduce_scatter_block");
        Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export(lib, "MPI_Allreduce");
        Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export(lib, "MPI_Bcast");
        Reduce = (delegate* unmanaged<void*, void*, int, nint, nint, int, nint, int>)Export(lib, "MPI_Reduce");
        Barrier = (delegate* unmanaged<nint, int>)Export(lib, "MPI_Barrier");
        Abort = (delegate* unmanaged<nint, int, int>)Export(lib, "MPI_Abort");
        Error_string = (delegate* unmanaged<int, byte*, int*, int>)Export(lib, "MPI_Error_string");
        Get_library_version = (delegate* unmanaged<byte*, int*, int>)Export(lib, "MPI_Get_library_version");
    }

    /// <summary>Loads the first of <paramref name="names"/> that the system has; throws <see cref="MpiUnavailableException"/> naming them and the fix.</summary>
    public static MpiLibrary Load(IEnumerable<string> names)
    {
        var tried = new List<string>();
        foreach (var name in names)
        {
            if (NativeLibrary.TryLoad(name, out var lib))
            {
                try
                {
                    return new MpiLibrary(lib, name);
                }
                catch (EntryPointNotFoundException e)
                {
                    throw new MpiUnavailableException($"{name} was loaded but lacks an MPI function or handle this binding needs ({e.Message}); " +
                                                      "it is not an MPI-3 library. Install Open MPI: apt-get install -y openmpi-bin libopenmpi-dev", e);
                }
            }
            tried.Add(name);
        }
        throw new MpiUnavailableException(
            $"this process was started by an MPI launcher but no MPI library could be loaded (tried {string.Join(", ", tried)}). " +
            "Install Open MPI with `apt-get install -y openmpi-bin libopenmpi-dev` (it provides libmpi.so.40 and mpirun), " +
            "or add the folder holding libmpi.so.40 to LD_LIBRARY_PATH.");
    }

    /// <summary>The library's own text for an MPI error code.</summary>
    public string ErrorText(int code)
    {
        var buffer = stackalloc byte[1024]; // MPI_MAX_ERROR_STRING is 256 (Open MPI) or 1024 (MPICH)
        int length = 0;
        if (Error_string(code, buffer, &length) != 0 || length <= 0) return "unknown MPI error";
        return Encoding.ASCII.GetString(buffer, Math.Min(length, 1024)).TrimEnd('\0', ' ', '\n');
    }

    public string Version()
    {
        var buffer = new byte[8192]; // MPI_MAX_LIBRARY_VERSION_STRING is 256 (Open MPI) or 8192 (MPICH)
        int length = 0;
        fixed (byte* p = buffer)
            if (Get_library_version(p, &length) != 0) return Name;
        string text = Encoding.ASCII.GetString(buffer, 0, Math.Clamp(length, 0, buffer.Length)).TrimEnd('\0', ' ', '\n');
        int comma = text.IndexOf(',');
        return comma > 0 ? text[..comma] : text;
    }

    private static nint Export(nint lib, string symbol) => NativeLibrary.GetExport(lib, symbol);
}
