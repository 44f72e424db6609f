#!/usr/bin/env bash
# Builds libLibTorchSharp.so (TorchSharp 0.107's native layer) and libPatrickStarCuda.so (ours) against the python torch
# of this machine with CMake and ninja, and reuses the last build when nothing that goes into it has changed.
#
# Usage: gpu/build-native.sh --src DIR --ours DIR --out DIR [--python python3] [--jobs 16] [--dry-run]
#   --src      TorchSharp's src/Native, as exported by gpu/fetch-native-sources.sh
#   --ours     our helper's sources (native/PatrickStarCuda)
#   --out      cache and output folder: libLibTorchSharp.so, libPatrickStarCuda.so, env.sh, stamp, logs/
#   --python   the python whose torch to build against (default python3)
#   --dry-run  print every command it would run and change nothing (torch is still asked for its paths)
# The environment a run needs is printed at the end and written to --out/env.sh (see gpu/NATIVE.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
src="" ours="" out="" python=python3 jobs=16 dry_run=0

die() { echo "build-native.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --src) src="${2:?--src needs a directory}"; shift 2 ;;
        --ours) ours="${2:?--ours needs a directory}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --python) python="${2:?--python needs a program}"; shift 2 ;;
        --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n 2,11p "$0"; exit 0 ;;
        *) die "unknown argument '$1' (usage: --src DIR --ours DIR --out DIR [--python P] [--jobs N] [--dry-run])" ;;
    esac
done
[[ -n "$src" && -n "$ours" && -n "$out" ]] || die "--src, --ours and --out are required (see --help)"
[[ -f "$src/LibTorchSharp/CMakeLists.txt" && -f "$src/Stdafx.h" ]] \
    || die "--src $src is not TorchSharp's src/Native (no LibTorchSharp/CMakeLists.txt or Stdafx.h); run gpu/fetch-native-sources.sh --out $src"
[[ -f "$ours/CMakeLists.txt" ]] || die "--ours $ours has no CMakeLists.txt (expected native/PatrickStarCuda)"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs '$jobs' is not a positive number"
src="$(cd "$src" && pwd)"
ours="$(cd "$ours" && pwd)"
wrapper="$repo/native/LibTorchSharp"
mkdir_out() { if [[ $dry_run == 1 ]]; then echo "+ mkdir -p $out"; else mkdir -p "$out"; fi; }
mkdir_out
out="$(cd "$out" 2>/dev/null && pwd || realpath -m "$out")"

# Prints a command, then runs it unless this is a dry run.
run() {
    printf '+'; printf ' %q' "$@"; printf '\n'
    [[ $dry_run == 1 ]] || "$@"
}

# ---- what torch is this -----------------------------------------------------------------------------------------
probe='import os, torch
print("torch_version=" + torch.__version__)
print("cuda_version=" + (torch.version.cuda or "none"))
print("cmake_prefix=" + torch.utils.cmake_prefix_path)
print("cxx11_abi=" + str(int(torch._C._GLIBCXX_USE_CXX11_ABI)))
print("torch_lib=" + os.path.join(os.path.dirname(torch.__file__), "lib"))'
echo "+ $python -c <probe: torch version, CUDA version, cmake prefix, C++11 ABI, lib folder>"
answer="$("$python" -c "$probe" 2>&1)" || die "$python could not import torch: $(tail -n1 <<<"$answer") (pass another interpreter with --python)"
torch_version="" cuda_version="" cmake_prefix="" cxx11_abi="" torch_lib=""
while IFS='=' read -r key value; do
    case "$key" in
        torch_version) torch_version="$value" ;; cuda_version) cuda_version="$value" ;;
        cmake_prefix) cmake_prefix="$value" ;; cxx11_abi) cxx11_abi="$value" ;; torch_lib) torch_lib="$value" ;;
    esac
done <<<"$answer"
[[ -n "$torch_version" && -n "$cuda_version" && -n "$cmake_prefix" && -n "$cxx11_abi" && -n "$torch_lib" ]] \
    || die "$python did not report torch's version, CUDA version, cmake prefix, ABI and lib folder (got: $(tr '\n' ' ' <<<"$answer"))"
echo "torch $torch_version, CUDA $cuda_version, C++11 ABI $cxx11_abi, cmake prefix $cmake_prefix"

# ---- cache key: torch, CUDA, ABI and every input file (sources, our CMake files, this script) ----------------------
tree_sums() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum); }
sources_sha="$( { tree_sums "$src"; tree_sums "$ours"; tree_sums "$wrapper"; tree_sums "$repo/native/cmake"; sha256sum < "$0"; } \
    | sha256sum | cut -c1-64)"
key="torch=$torch_version cuda=$cuda_version abi=$cxx11_abi sources=$sources_sha"
echo "cache key: $key"

write_env() {
    local env="$out/env.sh"
    local text
    text="# Written by gpu/build-native.sh ($key).
# Source it before starting PatrickStar so that TorchSharp and PatrickStar load the libraries built here:
# PSTAR_NATIVE_DIR is where libPatrickStarCuda.so and libLibTorchSharp.so are; LD_LIBRARY_PATH lets TorchSharp's
# probes for torch_cpu / torch_cuda / LibTorchSharp by name find python torch's libtorch and these libraries.
export PSTAR_NATIVE_DIR=$(printf %q "$out")
export LD_LIBRARY_PATH=$(printf %q "$out:$torch_lib")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    echo "environment for a run (also in $env):"
    sed -n 's/^export /  export /p' <<<"$text"
    if [[ $dry_run == 1 ]]; then echo "+ write $env"; else printf '%s\n' "$text" > "$env"; fi
}

if [[ -f "$out/stamp" && "$(cat "$out/stamp")" == "$key" && -f "$out/libLibTorchSharp.so" && -f "$out/libPatrickStarCuda.so" ]]; then
    echo "reusing libLibTorchSharp.so and libPatrickStarCuda.so in $out (built for $key)"
    write_env
    exit 0
fi

# ---- toolchain --------------------------------------------------------------------------------------------------
for tool in cmake ninja; do
    command -v "$tool" >/dev/null || [[ $dry_run == 1 ]] || die "$tool is not on PATH; install it (the build uses CMake with the Ninja generator)"
done
cuda_args=()
if [[ "$cuda_version" != none ]]; then
    nvcc="$(command -v nvcc || true)"
    [[ -n "$nvcc" || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
    [[ -n "$nvcc" || $dry_run == 1 ]] || die "torch $torch_version is built for CUDA $cuda_version but nvcc is neither on PATH nor in /usr/local/cuda/bin; put the CUDA toolkit's bin on PATH"
    nvcc="${nvcc:-/usr/local/cuda/bin/nvcc}"  # dry run without a toolkit: show where it would be looked for
    cuda_root="$(dirname "$(dirname "$nvcc")")"
    # Torch's cmake enables the CUDA language and picks GPU architectures; nothing here compiles device code, so name
    # one (sm_90, the H200) instead of letting it probe the GPU.
    cuda_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$cuda_root" -DCUDA_TOOLKIT_ROOT_DIR="$cuda_root" -DCMAKE_CUDA_ARCHITECTURES=90)
    export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
fi

# C++ standard: torch's headers accept C++17 up to 2.11; later ones ask for C++20 (#error "C++20 or later ... required").
cxx_std=17
IFS=. read -r major minor _ <<<"${torch_version%%+*}"
if (( major > 2 || (major == 2 && minor >= 12) )); then cxx_std=20; fi

work="$out/work/src"
logs="$out/logs"

# Our copy of TorchSharp's sources with the fixes torch versions after 2.10 need (gpu/NATIVE.md lists each one).
prepare_sources() {
    run rm -rf "$out/work"
    run mkdir -p "$out/work" "$logs"
    run cp -a "$src" "$work"
    # 1. c10::optional / c10::nullopt are deprecated aliases of std::optional / std::nullopt (torch >= 2.6) on their way
    #    out; the std names mean the same in every torch TorchSharp 0.107 can build against.
    run find "$work/LibTorchSharp" -name '*.[ch]*' -exec sed -i -E \
        -e 's/\bc10::optional\b/std::optional/g' -e 's/\bc10::nullopt\b/std::nullopt/g' \
        -e 's|#include <c10/util/Optional.h>|#include <optional>|' {} +
    # 2. The C++ standard their CMakeLists pins (17) when torch's headers want 20.
    if [[ $cxx_std != 17 ]]; then
        run sed -i -E -e "s/CXX_STANDARD 1[47]/CXX_STANDARD $cxx_std/" -e "s/-std=c\\+\\+17/-std=c++$cxx_std/" "$work/LibTorchSharp/CMakeLists.txt"
    fi
}

configure() { # name source-dir extra-args...
    local name="$1" dir="$2"; shift 2
    run rm -rf "$out/build/$name"
    run cmake -S "$dir" -B "$out/build/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$cmake_prefix" \
        -DTORCH_CXX11_ABI="$cxx11_abi" -DCMAKE_CXX_STANDARD="$cxx_std" ${cuda_args[@]+"${cuda_args[@]}"} "$@"
}

# Builds with ninja -k 0 (every failing file in one go: a GPU session is short), the output kept in logs/NAME.log.
build() { # name
    local name="$1" log="$logs/$1.log"
    printf '+ cmake --build %q -j %s -- -k 0 > %q 2>&1\n' "$out/build/$name" "$jobs" "$log"
    [[ $dry_run == 1 ]] && return 0
    mkdir -p "$logs"
    if cmake --build "$out/build/$name" -j "$jobs" -- -k 0 > "$log" 2>&1; then return 0; fi
    echo "build of $name failed; first errors (all of them in $log):" >&2
    grep -E 'error:|Error|undefined reference' "$log" | head -n 40 >&2 || tail -n 40 "$log" >&2
    echo "files that failed: $(grep -c '^FAILED:' "$log" || true)" >&2
    return 1
}

prepare_sources
configure PatrickStarCuda "$ours"
build PatrickStarCuda || exit 1
configure LibTorchSharp "$wrapper" -DTORCHSHARP_NATIVE_DIR="$work" -DLIBTORCH_PATH="$cmake_prefix"
if ! build LibTorchSharp; then
    if [[ $cxx_std == 17 ]] && grep -q 'C++20 or later' "$logs/LibTorchSharp.log"; then
        echo "torch $torch_version's headers want C++20: building both again with -std=c++20" >&2
        cxx_std=20
        prepare_sources
        configure PatrickStarCuda "$ours"
        build PatrickStarCuda || exit 1
        configure LibTorchSharp "$wrapper" -DTORCHSHARP_NATIVE_DIR="$work" -DLIBTORCH_PATH="$cmake_prefix"
        build LibTorchSharp || exit 1
    else
        exit 1
    fi
fi

run cp "$out/build/LibTorchSharp/LibTorchSharp/libLibTorchSharp.so" "$out/build/PatrickStarCuda/libPatrickStarCuda.so" "$out/"

# Checks on what was built: the entry points each side calls, and the CUDA backend linked in.
check_exports() { # library symbols...
    local lib="$1"; shift
    echo "+ nm -D --defined-only $lib (checking $*)"
    [[ $dry_run == 1 ]] && return 0
    local defined; defined="$(nm -D --defined-only "$lib")"
    for symbol in "$@"; do
        grep -qw "$symbol" <<<"$defined" || { echo "build-native.sh: $lib does not export $symbol" >&2; exit 1; }
    done
}
check_exports "$out/libLibTorchSharp.so" THSTorchCuda_is_available THSTensor_zeros THSGenerator_manual_seed
check_exports "$out/libPatrickStarCuda.so" pstar_cuda_last_error pstar_cuda_device_count pstar_cuda_allocated_bytes \
    pstar_cuda_peak_allocated_bytes pstar_cuda_reset_peak pstar_cuda_reserved_bytes pstar_cuda_mem_get_info pstar_cuda_current_stream
if [[ "$cuda_version" != none && $dry_run == 0 ]] && ! readelf -d "$out/libLibTorchSharp.so" | grep -q 'libtorch_cuda.so'; then
    echo "warning: libLibTorchSharp.so does not list libtorch_cuda.so; TorchSharp's own probe for torch_cuda must find it (LD_LIBRARY_PATH in env.sh)" >&2
fi

if [[ $dry_run == 1 ]]; then echo "+ write $out/stamp"; echo "dry run: nothing was built"; else printf '%s\n' "$key" > "$out/stamp"; fi
[[ $dry_run == 1 ]] || echo "built libLibTorchSharp.so and libPatrickStarCuda.so into $out for torch $torch_version (CUDA $cuda_version, C++$cxx_std)"
write_env
