#!/usr/bin/env bash
# On the GPU machine (no .NET SDK, no network): unpack the package gpu/pack.sh made, build or reuse the native
# libraries (gpu/build-native.sh against the machine's python torch), then run the device checks one after another,
# each under its own time limit, and write one report: $OUT/gpu-h200.md, beside one combined log, $OUT/run.log, the
# step outputs as $OUT/details.tar.xz and the native libraries built (so that they come back and can be carried again).
# A failed step is reported and the run goes on. `--dry-run` prints every step as it would run and touches nothing.
set -uo pipefail

usage() {
  cat <<'USAGE'
usage: gpu/run.sh [--dry-run] [--pack DIR] [--out DIR] [--budget SECONDS] [--python PYTHON]
  --pack DIR        the package gpu/pack.sh wrote (default: gpu/pack beside this script)
  --out DIR         where the report, the log and the native libraries go (default: $OUT, else gpu/out)
  --budget SECONDS  wall time for every step together (default 540); a step that no longer fits is skipped
  --python PYTHON   the python whose torch the native libraries are built against (default python3)
  --dry-run         print each step's command and time limit, run nothing, write nothing
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
pack="$here/pack"
out="${OUT:-$here/out}"
budget=540
python=python3
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --pack) pack="${2:?--pack needs a folder}"; shift ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    --budget) budget="${2:?--budget needs seconds}"; shift ;;
    --python) python="${2:?--python needs a program}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'; see gpu/run.sh --help." >&2; exit 2 ;;
  esac
  shift
done
case "$budget" in ''|*[!0-9]*) echo "run.sh: --budget must be whole seconds, not '$budget'." >&2; exit 2 ;; esac
pack=$(cd "$pack" 2>/dev/null && pwd || echo "$pack")

# Everything unpacked or produced goes under /tmp; only the report, the log, the details and the libraries go to $out.
tmp=/tmp/pstar-gpu
work="$tmp/work"
dotnet_root="$tmp/dotnet"
native_cache="$pack/native-cache"
# Our helper's sources travel with the working tree (native/); run from the package's own gpu/ copy, $repo is the package.
native_dir="$repo/native"
pstar="dotnet $tmp/app/pstar.dll"
log="$out/run.log"
steps="$work/steps.tsv"

# One model for the three trainings: GPT-2 small's sizes without dropout (gpt2-mini's sizes overridden), fp32 so that the
# CPU run is a reference to compare with. Chunks the size of the token embedding (the largest tensor): four of 147 MiB.
# `pstar estimate` (CPU figures) puts the device need at 720 MiB (one chunk + 488 MiB at the LM head + margin) and all four
# chunks with the activations at 1,077 MiB: 896 MiB leaves 176 MiB for what CUDA adds and still evicts every iteration.
model="--model gpt2-mini --layers 12 --hidden 768 --heads 12 --context 256 --seq 128 --batch 4 --precision fp32"
train="$model --seed 7 --steps 12 --eval-interval 0 --plain-output"
chunked="--engine chunked --chunk-size 38597376 --device-memory 896MiB --host-memory 8GiB"
# The scale search trains 3 steps at each size it tries (sizes doubled, then bisected), per engine: with 8 GiB + 64 GiB it
# would try models of several billion parameters and not finish in the time left; 2 GiB + 16 GiB finishes (about 1.2B
# parameters at most) and still puts the chunk engine's largest beside the plain trainer's.
scale_budgets="--device-memory 2GiB --host-memory 16GiB"

if [ "$dry" = 1 ]; then
  echo "# gpu/run.sh --dry-run: the steps in order, each with its time limit (the budget is $budget s); nothing runs."
  [ -d "$pack" ] || echo "# (no package at $pack yet: the paths below are where the run would read it; make it with gpu/pack.sh)"
else
  mkdir -p "$out" "$work" || { echo "run.sh: cannot create $out or $work." >&2; exit 1; }
  [ -f "$pack/MANIFEST.txt" ] || { echo "run.sh: no package at $pack (MANIFEST.txt missing); make one with gpu/pack.sh and carry it." >&2; exit 1; }
  : > "$log"
  printf 'step\texit\tseconds\tlimit\n' > "$steps"
fi

start=$(date +%s)
reserve=20 # kept for the report at the end

# step NAME LIMIT COMMAND: runs COMMAND with bash under `timeout`, its output appended to the log.
step() {
  local name="$1" limit="$2" command="$3"
  if [ "$dry" = 1 ]; then
    printf '[%s] (limit %s s) %s\n' "$name" "$limit" "$command"
    return 0
  fi
  local now left began rc
  now=$(date +%s)
  left=$((start + budget - reserve - now))
  if [ "$left" -lt 15 ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$steps"
    echo "=== [$name] skipped: the budget of $budget s is spent" >> "$log"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== [$name] (limit $limit s) $command" >> "$log"
  began=$(date +%s)
  timeout -k 10 "$limit" bash -c "$command" >> "$log" 2>&1 < /dev/null
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - began ))" "$limit" >> "$steps"
  echo "=== [$name] exit $rc after $(( $(date +%s) - began )) s" >> "$log"
  echo "[$name] exit $rc" >&2
}

step runtime 60 "rm -rf $dotnet_root && mkdir -p $dotnet_root && tar -xJf $pack/dotnet-runtime.tar.xz -C $dotnet_root && $dotnet_root/dotnet --list-runtimes"
step app 60 "rm -rf $tmp/app $tmp/tests && tar -xJf $pack/app.tar.xz -C $tmp && ls $tmp/app/pstar.dll $tmp/tests/PatrickStar.DeviceTests.dll"
step native 300 "bash $here/build-native.sh --src $pack/native-src --ours $native_dir/PatrickStarCuda --out $native_cache --python $python"
# The libraries come back in $out (16 MiB a file at most: stripped when larger), with env.sh and build-native.sh's stamp:
# put them in gpu/pack/native-cache/ to carry them next time and skip the build.
step native-out 30 "mkdir -p $out/native && for f in \$(find $native_cache -maxdepth 3 -name '*.so' -type f | head -n 3); do if [ \$(stat -c %s \$f) -gt 16777216 ]; then strip --strip-unneeded -o $out/native/\$(basename \$f) \$f; else cp \$f $out/native/; fi; ls -l $out/native/\$(basename \$f); done; cp $native_cache/env.sh $native_cache/stamp $out/native/ 2>/dev/null; true"

export DOTNET_ROOT="$dotnet_root" PATH="$dotnet_root:$PATH" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 TERM=dumb
if [ "$dry" = 1 ]; then
  echo "[env] export DOTNET_ROOT=$dotnet_root PATH=$dotnet_root:\$PATH; . $native_cache/env.sh"
elif [ -f "$native_cache/env.sh" ]; then
  # shellcheck disable=SC1091
  . "$native_cache/env.sh"
fi

step cuda-check 60 "$pstar cuda-check --size 256MiB"
step device-tests 150 "PSTAR_TEST_DEVICE=cuda dotnet $tmp/tests/PatrickStar.DeviceTests.dll -noColor"
step estimate 30 "$pstar estimate $model $chunked --device cuda"
step train-cpu 90 "$pstar train $train --device cpu --metrics $work/train-cpu.jsonl"
step train-plain 60 "$pstar train $train --device cuda --metrics $work/train-plain.jsonl"
step train-chunked 90 "$pstar train $train $chunked --device cuda --metrics $work/train-chunked.jsonl --profile $work/train-chunked-profile.json"
step bench 150 "$pstar bench --parts matmul,trainers --precision bf16 --matmul-size 8192 --hidden 2048 --layers 8 --heads 16 --seq 1024 --batch 8 --steps 3 --device-memory 32GiB --host-memory 64GiB --tight-memory off --report $work/bench"
# Two ranks on the one GPU (cuda:0 for both): the collectives stage chunks through host memory.
step launch 90 "command -v mpirun >/dev/null || { echo 'not measured: mpirun is not on this machine'; exit 3; }; $pstar launch -n 2 -- train $model --seed 7 --steps 6 --eval-interval 0 --plain-output $chunked --device cuda:0 --metrics $work/launch.jsonl"
step scale 300 "$pstar bench --parts scale $scale_budgets --report $work/scale"

reserve=0
step report 20 "$python $here/report.py --work $work --log $log --native $out/native --out $out/gpu-h200.md"
step details 20 "cd $work && find . -maxdepth 2 -type f -size -8M | tar -cJf $out/details.tar.xz -T -"
if [ "$dry" = 0 ]; then
  echo "run.sh: report $out/gpu-h200.md, log $log ($(( $(date +%s) - start )) s)" >&2
fi
exit 0
