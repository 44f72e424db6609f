#!/usr/bin/env bash
# Exports TorchSharp's native layer (src/Native: LibTorchSharp's C++ sources and the CMake files around them) from a
# TorchSharp git directory into an ignored folder, so that gpu/build-native.sh can compile it on the GPU machine
# against the python torch there. The sources stay out of our tracked code.
# Usage: gpu/fetch-native-sources.sh [--torchsharp-git DIR] [--out DIR] [--rev REV]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
default_git=/work/.mirror/dotnet+TorchSharp/repo
git_dir=""
out="$here/native-src"
rev=HEAD

while [[ $# -gt 0 ]]; do
    case "$1" in
        --torchsharp-git) git_dir="${2:?--torchsharp-git needs a directory}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        --rev) rev="${2:?--rev needs a commit or tag}"; shift 2 ;;
        -h|--help) sed -n 2,5p "$0"; exit 0 ;;
        *) echo "fetch-native-sources.sh: unknown argument '$1' (use --torchsharp-git DIR, --out DIR, --rev REV)" >&2; exit 2 ;;
    esac
done

if [[ -z "$git_dir" ]]; then
    if [[ -d "$default_git" ]]; then git_dir="$default_git"
    else echo "fetch-native-sources.sh: no TorchSharp git directory at $default_git; pass one with --torchsharp-git DIR (a clone or bare mirror of dotnet/TorchSharp at 0.107.0)" >&2; exit 2; fi
fi
if ! git --git-dir="$git_dir" rev-parse --verify --quiet "$rev:src/Native/LibTorchSharp" >/dev/null 2>&1; then
    echo "fetch-native-sources.sh: $git_dir has no src/Native/LibTorchSharp at $rev; pass a TorchSharp git directory with --torchsharp-git DIR" >&2
    exit 2
fi

commit="$(git --git-dir="$git_dir" rev-parse "$rev^{commit}")"
version="$(git --git-dir="$git_dir" show "$rev:build/BranchInfo.props" 2>/dev/null \
    | sed -n 's:.*<\(Major\|Minor\|Patch\)Version>\([0-9]*\)<.*:\2:p' | paste -sd. -)"

# Export into a fresh folder next to the target, then swap it in: a failed export leaves the old copy intact.
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d "$(dirname "$out")/.native-src.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
git --git-dir="$git_dir" archive --format=tar "$commit" src/Native | tar -x -C "$tmp"
printf 'torchsharp_commit=%s\ntorchsharp_version=%s\n' "$commit" "${version:-unknown}" > "$tmp/src/Native/SOURCE"
rm -rf "$out"
mv "$tmp/src/Native" "$out"

size_kib="$(du -sk "$out" | cut -f1)"
echo "exported TorchSharp ${version:-?} ($commit) src/Native to $out (${size_kib} KiB)"
