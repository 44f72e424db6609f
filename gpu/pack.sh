#!/usr/bin/env bash
# Makes what travels to the GPU machine (which has python torch, CMake, ninja, a compiler and nvcc, but no .NET and no
# network): the published pstar and device tests without any libtorch (-p:TorchBackend=none; LibTorchSharp is built
# there against its torch), this machine's .NET runtime, TorchSharp's native sources, our native/ helper and gpu/*.
# The result stays under --max-mib (60 MiB by default) so that `carry` can take it with the working tree.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: gpu/pack.sh [--out DIR] [--torchsharp-git DIR | --native-src DIR | --no-native-src] [--xz-level N] [--xz-threads N] [--max-mib N]
  --out DIR             the package folder (default gpu/pack, ignored by git; carry names it)
  --torchsharp-git DIR  a TorchSharp git directory for gpu/fetch-native-sources.sh (default: its own)
  --native-src DIR      copy TorchSharp's src/Native from DIR instead of exporting it
  --no-native-src       leave the LibTorchSharp sources out (the package then cannot build them: for tests)
  --xz-level N          xz preset, 0-9 (default 1: 4x less CPU than 6 for ~3 MB more; see README)
  --xz-threads N        xz threads (default: the cores here)
  --max-mib N           refuse a package larger than this (default 60)
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out="$here/pack"
torchsharp_git=""
native_src=""
no_native_src=0
threads=$(nproc 2>/dev/null || echo 2)
level=1
max_mib=60
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a folder}"; shift ;;
    --torchsharp-git) torchsharp_git="${2:?--torchsharp-git needs a folder}"; shift ;;
    --native-src) native_src="${2:?--native-src needs a folder}"; shift ;;
    --no-native-src) no_native_src=1 ;;
    --xz-level) level="${2:?--xz-level needs a number}"; shift ;;
    --xz-threads) threads="${2:?--xz-threads needs a number}"; shift ;;
    --max-mib) max_mib="${2:?--max-mib needs a number}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pack.sh: unknown argument '$1'; see gpu/pack.sh --help." >&2; exit 2 ;;
  esac
  shift
done
die() { echo "pack.sh: $*" >&2; exit 1; }
case "$threads$max_mib$level" in *[!0-9]*) die "--xz-level, --xz-threads and --max-mib take whole numbers." ;; esac
[ -n "$native_src" ] && [ ! -f "$native_src/LibTorchSharp/CMakeLists.txt" ] && die "--native-src $native_src is not TorchSharp's src/Native (no LibTorchSharp/CMakeLists.txt)."
for tool in dotnet tar xz; do command -v "$tool" >/dev/null || die "$tool is needed and not on PATH."; done

began=$(date +%s)
mkdir -p "$out" 2>/dev/null && [ -w "$out" ] || die "cannot write the package folder $out."
out=$(cd "$out" && pwd)
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# 1. TorchSharp's native sources first: without them the package is useless, so fail before the long steps.
if [ "$no_native_src" = 1 ]; then
  echo "pack: LibTorchSharp sources left out (--no-native-src)."
elif [ -n "$native_src" ]; then
  cp -r "$native_src" "$stage/native-src"
else
  fetch_args=(--out "$stage/native-src")
  [ -n "$torchsharp_git" ] && fetch_args+=(--torchsharp-git "$torchsharp_git")
  if [ ! -f "$here/fetch-native-sources.sh" ]; then
    echo "gpu/fetch-native-sources.sh is missing" > "$stage/fetch.err"
    false
  else
    bash "$here/fetch-native-sources.sh" "${fetch_args[@]}" >/dev/null 2>"$stage/fetch.err"
  fi || die "the LibTorchSharp sources could not be exported ($(tail -n 1 "$stage/fetch.err")); give --torchsharp-git DIR (a TorchSharp git directory at 0.107.0) or --native-src DIR (its src/Native)."
fi

# 2. The .NET runtime of this machine, the least that runs `dotnet app.dll`: the muxer, hostfxr and Microsoft.NETCore.App.
runtime_line=$(dotnet --list-runtimes | grep '^Microsoft.NETCore.App 10\.' | sort -V | tail -n 1) \
  || die "no Microsoft.NETCore.App 10.x runtime here (dotnet --list-runtimes)."
runtime_version=$(echo "$runtime_line" | cut -d' ' -f2)
dotnet_root=$(dirname "$(dirname "$(echo "$runtime_line" | sed 's/.*\[\(.*\)\]/\1/')")")
fxr=$(ls -d "$dotnet_root"/host/fxr/* | sort -V | tail -n 1)
# Compressed once per runtime version and level, in the build folder (it does not travel).
build="$here/.pack-build"
runtime_archive="$build/dotnet-runtime-$runtime_version-xz$level.tar.xz"
if [ ! -f "$runtime_archive" ]; then
  mkdir -p "$build"
  tar -C "$dotnet_root" -cf - dotnet "host/fxr/$(basename "$fxr")" "shared/Microsoft.NETCore.App/$runtime_version" LICENSE.txt ThirdPartyNotices.txt \
    | xz -"$level" -T"$threads" > "$runtime_archive.part" && mv "$runtime_archive.part" "$runtime_archive"
fi
cp "$runtime_archive" "$stage/dotnet-runtime.tar.xz"

# 3. pstar and the device tests, Release, framework-dependent, no libtorch natives; their own build folder, so that
#    the developer's bin/ and obj/ (built with the CPU libtorch) stay as they are.
for project in src/PatrickStar.Cli tests/PatrickStar.DeviceTests; do
  name=$([ "$project" = src/PatrickStar.Cli ] && echo app || echo tests)
  dotnet publish "$repo/$project" -c Release -p:TorchBackend=none --artifacts-path "$build" -o "$stage/$name" -nologo -v quiet \
    > "$stage/publish-$name.log" 2>&1 || { tail -n 20 "$stage/publish-$name.log" >&2; die "dotnet publish $project failed (log above)."; }
done
# Nothing of libtorch may travel: it is ~500 MB, and the GPU machine loads its own.
leaked=$(find "$stage/app" "$stage/tests" \( -name 'libtorch*' -o -name 'libLibTorchSharp*' -o -name 'libc10*' \) | head -n 3)
[ -z "$leaked" ] || die "libtorch natives were published ($leaked); the TorchBackend=none build must not carry them."
find "$stage/tests" -type d -empty -delete # left by the coverage collector's removal (tests/PatrickStar.DeviceTests.csproj)
# The two share most assemblies: identical files become hard links, which tar stores once.
(cd "$stage/tests" && find . -type f) | while read -r f; do
  if [ -f "$stage/app/$f" ] && cmp -s "$stage/app/$f" "$stage/tests/$f"; then ln -f "$stage/app/$f" "$stage/tests/$f"; fi
done
tar -C "$stage" -cf - app tests | xz -"$level" -T"$threads" > "$stage/app.tar.xz"
rm -rf "$stage/app" "$stage/tests" "$stage"/publish-*.log "$stage/fetch.err"

# 4. Our native helper and the GPU scripts, so that the package also runs from outside this tree.
[ -d "$repo/native" ] && cp -r "$repo/native" "$stage/native"
mkdir -p "$stage/gpu"
cp "$here"/*.sh "$stage/gpu/"
cp "$here"/*.py "$stage/gpu/" 2>/dev/null || true

# 5. Swap the new package in; the native cache built on a GPU machine and carried back (native-cache/) is kept.
for item in app.tar.xz dotnet-runtime.tar.xz native-src native gpu MANIFEST.txt; do rm -rf "${out:?}/$item"; done
mv "$stage"/* "$out/"
seconds=$(( $(date +%s) - began ))
total=$(find "$out" -path "$out/.stage.*" -prune -o -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
{
  echo "PatrickStar.NET GPU package, made $(date -u '+%Y-%m-%d %H:%M UTC') in $seconds s from $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo ".NET runtime $runtime_version (hostfxr $(basename "$fxr")), TorchBackend=none, xz -$level"
  echo "total_bytes $total (all but this file)"
  for item in app.tar.xz dotnet-runtime.tar.xz native-src native gpu native-cache; do
    [ -e "$out/$item" ] && echo "$item $(du -sb "$out/$item" | cut -f1)"
  done
  [ -e "$out/native-src/SOURCE" ] && sed 's/^/native-src: /' "$out/native-src/SOURCE"
} > "$out/MANIFEST.txt"
total=$((total + $(stat -c %s "$out/MANIFEST.txt")))
mib=$(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "pack: $out is $mib MiB ($total bytes) after $seconds s; see $out/MANIFEST.txt"
[ "$total" -le $((max_mib * 1048576)) ] || die "the package is $mib MiB, over the $max_mib MiB that may travel; see $out/MANIFEST.txt."
