# Finds the libtorch of a python torch install (CMAKE_PREFIX_PATH = torch.utils.cmake_prefix_path) for the two native
# libraries gpu/build-native.sh builds. Included before find_package(Torch).
#
# Torch's public cuda.cmake (some 2.x releases) looks for NVTX3 headers inside the *consumer's* source tree and, not
# finding them, links the legacy CUDA::nvToolsExt, which CUDA 12.9+ and 13 no longer ship: configure then fails with
# "target CUDA::nvToolsExt was not found". Where the toolkit has the header-only NVTX3, stand it in for the old target.
find_package(CUDAToolkit QUIET)
if(CUDAToolkit_FOUND AND NOT TARGET CUDA::nvToolsExt)
  add_library(CUDA::nvToolsExt INTERFACE IMPORTED)
  if(TARGET CUDA::nvtx3)
    set_property(TARGET CUDA::nvToolsExt PROPERTY INTERFACE_LINK_LIBRARIES CUDA::nvtx3)
  else()
    set_property(TARGET CUDA::nvToolsExt PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${CUDAToolkit_INCLUDE_DIRS}")
  endif()
endif()

# Every library named on the link line stays a DT_NEEDED entry: libtorch.so is what pulls in libtorch_cuda.so, whose
# static initializers register the CUDA backend; with --as-needed (Ubuntu's default) it could be dropped and
# torch::cuda::is_available() would say false.
string(APPEND CMAKE_SHARED_LINKER_FLAGS " -Wl,--no-as-needed")

set(TORCH_CXX11_ABI "1" CACHE STRING "torch._C._GLIBCXX_USE_CXX11_ABI of the torch built against (0 or 1)")
add_compile_definitions(_GLIBCXX_USE_CXX11_ABI=${TORCH_CXX11_ABI})
