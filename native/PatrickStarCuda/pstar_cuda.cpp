// The C ABI PatrickStar's C# side calls (src/PatrickStar/Runtime/Cuda/CudaAllocatorStatistics.cs). Every function
// returns 0 on success or a nonzero code; on failure pstar_cuda_last_error() gives the message (per thread).
// Only C types cross the boundary, and no C++ exception escapes (one reaching .NET would abort the process).
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

#define PSTAR_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

enum Code : int {
  kOk = 0,
  kBadArgument = 1,
  kCudaError = 2,
  kTorchError = 3,
};

thread_local std::string last_error;

int fail(int code, std::string message) {
  last_error = std::move(message);
  return code;
}

int cuda_fail(const char* call, cudaError_t error) {
  return fail(kCudaError, std::string(call) + " failed: " + cudaGetErrorName(error) + " (" + std::to_string(int(error)) + ")");
}

int check_device(int device) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) return cuda_fail("cudaGetDeviceCount", error);
  if (device < 0 || device >= count)
    return fail(kBadArgument, "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " devices)");
  return kOk;
}

// Runs body() and turns any exception into a code and a message.
template <typename Body>
int guarded(const char* what, Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(kTorchError, std::string(what) + ": " + e.what());
  } catch (...) {
    return fail(kTorchError, std::string(what) + ": unknown C++ exception");
  }
}

// allocated_bytes / reserved_bytes of one device, aggregated over the small and large pools. The allocator is created
// lazily by the first CUDA allocation; before that nothing is allocated, and its stats call would reject the device.
// get()->getDeviceStats() is used (not the free function) because it has kept its shape across torch 2.x, while the
// DeviceStats type moved to c10::CachingDeviceAllocator; index 0 is StatType::AGGREGATE in every version.
template <typename Read>
int read_stats(int device, int64_t* out, const char* what, Read read) {
  if (out == nullptr) return fail(kBadArgument, std::string(what) + ": null output pointer");
  *out = 0;
  if (int code = check_device(device)) return code;
  return guarded(what, [&] {
    auto* allocator = c10::cuda::CUDACachingAllocator::get();
    if (allocator == nullptr || !allocator->initialized()) return int(kOk);
    auto stats = allocator->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    *out = read(stats);
    return int(kOk);
  });
}

constexpr size_t kAggregate = 0;

}  // namespace

PSTAR_EXPORT int pstar_cuda_last_error(char* buffer, int length) {
  if (buffer == nullptr || length <= 0) return kBadArgument;
  size_t n = std::min(last_error.size(), size_t(length - 1));
  std::memcpy(buffer, last_error.data(), n);
  buffer[n] = '\0';
  return kOk;
}

PSTAR_EXPORT int pstar_cuda_device_count(int* count) {
  if (count == nullptr) return fail(kBadArgument, "pstar_cuda_device_count: null output pointer");
  *count = 0;
  cudaError_t error = cudaGetDeviceCount(count);
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) {
    *count = 0;
    return kOk;
  }
  return error == cudaSuccess ? int(kOk) : cuda_fail("cudaGetDeviceCount", error);
}

PSTAR_EXPORT int pstar_cuda_allocated_bytes(int device, int64_t* bytes) {
  return read_stats(device, bytes, "allocated bytes", [](const auto& s) { return int64_t(s.allocated_bytes[kAggregate].current); });
}

PSTAR_EXPORT int pstar_cuda_peak_allocated_bytes(int device, int64_t* bytes) {
  return read_stats(device, bytes, "peak allocated bytes", [](const auto& s) { return int64_t(s.allocated_bytes[kAggregate].peak); });
}

PSTAR_EXPORT int pstar_cuda_reserved_bytes(int device, int64_t* bytes) {
  return read_stats(device, bytes, "reserved bytes", [](const auto& s) { return int64_t(s.reserved_bytes[kAggregate].current); });
}

PSTAR_EXPORT int pstar_cuda_reset_peak(int device) {
  if (int code = check_device(device)) return code;
  return guarded("reset peak", [&] {
    auto* allocator = c10::cuda::CUDACachingAllocator::get();
    if (allocator != nullptr && allocator->initialized()) allocator->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return int(kOk);
  });
}

// cudaMemGetInfo answers for the current device: switch to the one asked for, then back.
PSTAR_EXPORT int pstar_cuda_mem_get_info(int device, int64_t* free_bytes, int64_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return fail(kBadArgument, "pstar_cuda_mem_get_info: null output pointer");
  *free_bytes = 0;
  *total_bytes = 0;
  if (int code = check_device(device)) return code;
  int previous = 0;
  cudaError_t error = cudaGetDevice(&previous);
  if (error != cudaSuccess) return cuda_fail("cudaGetDevice", error);
  if (previous != device && (error = cudaSetDevice(device)) != cudaSuccess) return cuda_fail("cudaSetDevice", error);
  size_t free_now = 0, total = 0;
  cudaError_t info = cudaMemGetInfo(&free_now, &total);
  if (previous != device && (error = cudaSetDevice(previous)) != cudaSuccess) return cuda_fail("cudaSetDevice (restore)", error);
  if (info != cudaSuccess) return cuda_fail("cudaMemGetInfo", info);
  *free_bytes = int64_t(free_now);
  *total_bytes = int64_t(total);
  return kOk;
}

// libtorch's current stream on a device, as a cudaStream_t (0 is the default stream, which is what TorchSharp uses,
// since it never sets a stream).
PSTAR_EXPORT int pstar_cuda_current_stream(int device, void** stream) {
  if (stream == nullptr) return fail(kBadArgument, "pstar_cuda_current_stream: null output pointer");
  *stream = nullptr;
  if (int code = check_device(device)) return code;
  return guarded("current stream", [&] {
    *stream = static_cast<void*>(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream());
    return int(kOk);
  });
}
