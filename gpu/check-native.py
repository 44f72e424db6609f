#!/usr/bin/env python3
"""Checks the libraries gpu/build-native.sh built, from python torch alone (no .NET needed), on a CUDA machine.

Usage: python3 gpu/check-native.py DIR   (DIR = build-native.sh's --out)

libPatrickStarCuda's readings are compared with torch.cuda's own (the same caching allocator in this process), and
libLibTorchSharp's THSTorchCuda_is_available / THSTorchCuda_device_count with torch.cuda. Prints one line per check and
exits 1 if any differs.
"""
import ctypes
import os
import sys

import torch


def main(folder: str) -> int:
    if not torch.cuda.is_available():
        print("check-native: torch.cuda.is_available() is False in python; nothing to compare")
        return 1
    failures = 0

    def check(name, ours, theirs):
        nonlocal failures
        ok = ours == theirs
        failures += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {name}: ours {ours}, torch {theirs}")

    lib = ctypes.CDLL(os.path.join(folder, "libPatrickStarCuda.so"))
    message = ctypes.create_string_buffer(1024)

    def read(function):
        value = ctypes.c_int64()
        code = function(0, ctypes.byref(value))
        if code != 0:
            lib.pstar_cuda_last_error(message, len(message))
            raise RuntimeError(f"{function.__name__} returned {code}: {message.value.decode()}")
        return value.value

    count = ctypes.c_int()
    assert lib.pstar_cuda_device_count(ctypes.byref(count)) == 0
    check("device count", count.value, torch.cuda.device_count())

    block = torch.empty(64 << 20, dtype=torch.uint8, device="cuda:0")
    torch.cuda.synchronize()
    check("allocated bytes", read(lib.pstar_cuda_allocated_bytes), torch.cuda.memory_allocated(0))
    check("reserved bytes", read(lib.pstar_cuda_reserved_bytes), torch.cuda.memory_reserved(0))
    del block
    check("peak allocated bytes", read(lib.pstar_cuda_peak_allocated_bytes), torch.cuda.max_memory_allocated(0))
    assert lib.pstar_cuda_reset_peak(0) == 0
    check("peak after reset", read(lib.pstar_cuda_peak_allocated_bytes), torch.cuda.memory_allocated(0))
    free_b, total_b = ctypes.c_int64(), ctypes.c_int64()
    assert lib.pstar_cuda_mem_get_info(0, ctypes.byref(free_b), ctypes.byref(total_b)) == 0
    torch_free, torch_total = torch.cuda.mem_get_info(0)
    check("total device bytes", total_b.value, torch_total)
    print(f"info free device bytes: ours {free_b.value}, torch {torch_free} (other processes may move it)")
    stream = ctypes.c_void_p()
    assert lib.pstar_cuda_current_stream(0, ctypes.byref(stream)) == 0
    check("current stream", stream.value or 0, torch.cuda.current_stream(0).cuda_stream)
    bad = ctypes.c_int64()
    code = lib.pstar_cuda_allocated_bytes(count.value, ctypes.byref(bad))
    lib.pstar_cuda_last_error(message, len(message))
    check("an absent device is refused", code != 0 and b"does not exist" in message.value, True)

    sharp = ctypes.CDLL(os.path.join(folder, "libLibTorchSharp.so"))
    sharp.THSTorchCuda_is_available.restype = ctypes.c_bool
    sharp.THSTorchCuda_device_count.restype = ctypes.c_int
    check("LibTorchSharp CUDA available", sharp.THSTorchCuda_is_available(), True)
    check("LibTorchSharp device count", sharp.THSTorchCuda_device_count(), torch.cuda.device_count())
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python3 gpu/check-native.py DIR  (the --out folder of gpu/build-native.sh)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
