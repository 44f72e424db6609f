#!/usr/bin/env python3
"""gpu/run.sh's report: reads the step table, the combined log and the step outputs, writes one markdown file."""
import argparse, json, os, re

PEAK_TFLOPS = float(os.environ.get("PSTAR_PEAK_TFLOPS", "790"))  # H200 bf16 dense, as the issue takes it


def sections(log_text):
    """The log's output per step: the lines between '=== [name] (limit' and '=== [name] exit'."""
    out, name = {}, None
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log_text).splitlines():  # no colour codes
        m = re.match(r"=== \[([\w-]+)\] \(limit", line)
        if m:
            name = m.group(1)
            out[name] = []
        elif re.match(r"=== \[[\w-]+\] (exit|skipped)", line):
            name = None
        elif name:
            out[name].append(line)
    return out


def jsonl(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def tail(lines, n=3):
    return " / ".join(l.strip() for l in lines[-n:] if l.strip()) or "(no output)"


def losses_table(work):
    runs = {name: jsonl(os.path.join(work, f"train-{name}.jsonl")) for name in ("cpu", "plain", "chunked")}
    if not any(runs.values()):
        return ["No training produced metrics."]
    lines = ["| step | CPU | cuda plain | cuda chunked |", "|---|---|---|---|"]
    steps = max(len(r) for r in runs.values())
    for i in range(steps):
        cell = lambda r: f"{r[i]['loss']:.5f}" if i < len(r) else "-"
        lines.append(f"| {i + 1} | {cell(runs['cpu'])} | {cell(runs['plain'])} | {cell(runs['chunked'])} |")

    def worst(a, b):
        n = min(len(a), len(b))
        return max((abs(a[i]["loss"] - b[i]["loss"]) / abs(a[i]["loss"]) for i in range(n)), default=None), n

    lines.append("")
    for x, y in (("chunked", "plain"), ("plain", "cpu"), ("chunked", "cpu")):
        w, n = worst(runs[x], runs[y])
        lines.append(f"- {x} vs {y}: " + ("not compared (a run is missing)" if w is None else f"largest relative loss difference {w:.2e} over {n} steps"))
    chunked = runs["chunked"]
    if chunked:
        later = chunked[1:] or chunked
        mean = lambda k: sum(s.get(k, 0) or 0 for s in later) / len(later)
        to_dev, to_host, ahead = mean("bytes_to_device"), mean("bytes_to_host"), mean("prefetch_bytes")
        wait, step = mean("prefetch_wait_seconds"), mean("step_seconds")
        lines.append(f"- chunk traffic per step after the warm-up: {to_dev / 2**20:.0f} MiB to the device, {to_host / 2**20:.0f} MiB to the host, "
                     f"{mean('evictions'):.1f} evictions; peak device {max(s.get('peak_device_bytes', 0) or 0 for s in chunked) / 2**20:.0f} MiB")
        if to_dev > 0:
            lines.append(f"- read ahead (overlapped with compute): {ahead / to_dev:.0%} of the bytes to the device; "
                         f"waiting for copies {wait:.3f} s of a {step:.3f} s step ({wait / step if step else 0:.1%})")
        for s in ("plain", "chunked"):
            if runs[s]:
                t = runs[s][1:] or runs[s]
                lines.append(f"- {s}: {sum(r['step_seconds'] for r in t) / len(t):.3f} s/step, {sum(r.get('tflops', 0) or 0 for r in t) / len(t):.1f} TFLOPS")
    return lines


def bench_lines(work):
    report = load(os.path.join(work, "bench", "report.json"))
    if not report:
        return ["No bench report (see the log)."]
    lines = []
    matmul = report.get("matmul")
    if matmul:
        lines.append(f"- matmul: `{json.dumps(matmul)[:300]}`")
    trainers = report.get("trainers") or {}
    for run in trainers.get("runs", []):
        if run.get("error"):
            lines.append(f"- {run.get('label')}: failed: {run['error']}")
            continue
        tf = run.get("tflops") or 0
        frac = run.get("fraction_of_matmul_peak")
        lines.append(f"- {run.get('label')}: {run.get('median_step_seconds', 0):.3f} s/step, {tf:.1f} TFLOPS = {tf / PEAK_TFLOPS:.1%} of the H200's "
                     f"{PEAK_TFLOPS:.0f} TFLOP/s bf16" + (f", {frac:.1%} of the measured matmul peak" if frac else "")
                     + f"; to device {(run.get('bytes_to_device_per_iteration') or 0) / 2**20:.0f} MiB/iteration")
    model = trainers.get("model")
    if model:
        lines.append(f"- model: {model.get('parameters', 0) / 1e6:.0f}M parameters, hidden {model.get('hidden')}, {model.get('layers')} layers, "
                     f"seq {model.get('seq')}, batch {model.get('batch')}, {model.get('precision')}")
    return lines or ["The bench report has no trainers part."]


def scale_lines(work, log):
    report = load(os.path.join(work, "scale", "report.json"))
    if report and report.get("scale"):
        s = report["scale"]
        lines = [f"- budgets: {s['device_bytes'] / 2**30:.0f} GiB device + {s['host_bytes'] / 2**30:.0f} GiB host, hidden {s['hidden']}, {s['precision']}"]
        lines += [f"- {r['engine']}: {r['layers']} layers, {r['parameters']:,} parameters" for r in s["results"]]
        return lines
    # Cut short: the largest size each engine trained so far, from the trial lines.
    best = {}
    for line in log:
        m = re.match(r"\s*(\S+)\s+(\d+) layers\s+([\d.,]+)M params: trains", line)
        if m:
            best[m.group(1)] = max(best.get(m.group(1), (0, "")), (int(m.group(2)), m.group(3)))
    if not best:
        return ["No scale result (see the log)."]
    return ["- the search did not finish in its time; largest sizes that trained so far:"] + \
        [f"- {engine}: {layers} layers, {params}M parameters" for engine, (layers, params) in best.items()]


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--work", required=True)
    a.add_argument("--log", required=True)
    a.add_argument("--native", required=True)
    a.add_argument("--out", required=True)
    args = a.parse_args()
    with open(args.log, errors="replace") as f:
        log = sections(f.read())
    steps = []
    try:
        with open(os.path.join(args.work, "steps.tsv")) as f:
            steps = [l.rstrip("\n").split("\t") for l in f][1:]
    except OSError:
        pass

    md = ["# PatrickStar.NET on one H200 (gpu/run.sh)", "", "| step | exit | seconds | limit | last output |", "|---|---|---|---|---|"]
    for name, code, seconds, limit in steps:
        md.append(f"| {name} | {code} | {seconds} | {limit} | {tail(log.get(name, []), 1)[:160]} |")

    md += ["", "## Device tests (PSTAR_TEST_DEVICE=cuda)"]
    tests = log.get("device-tests", [])
    summary = [l.strip() for l in tests if re.search(r"Total: \d+", l)]
    failed = [l.strip() for l in tests if "[FAIL]" in l]
    md += [f"- {summary[-1] if summary else 'no summary line: ' + tail(tests)}"] + [f"- {l}" for l in failed[:20]]

    md += ["", "## cuda-check"] + [f"- {l.strip()}" for l in log.get("cuda-check", [])[-4:]]
    md += ["", "## pstar estimate for the chunked training (last lines)"] + [f"    {l}" for l in log.get("estimate", [])[-6:]]
    md += ["", "## pstar train: CPU vs cuda plain vs cuda chunked (same config; chunked under a device budget that evicts)"] + losses_table(args.work)
    md += ["", "## Largest GPT per engine under the scale budgets (pstar bench --parts scale)"] + scale_lines(args.work, log.get("scale", []))
    md += ["", "## Trainers (pstar bench --parts matmul,trainers, bf16)"] + bench_lines(args.work)

    md += ["", "## Collectives on two ranks (one GPU): host staging"]
    launch = jsonl(os.path.join(args.work, "launch.jsonl"))
    if launch:
        last = launch[-1]
        comm = {k: v for k, v in last.items() if k.startswith("comm_") or "staging" in k}
        md.append(f"- last step: {last.get('step_seconds', 0):.3f} s; {json.dumps(comm)}")
    else:
        md.append(f"- not measured: {tail(log.get('launch', []), 1)}")

    md += ["", "## Native libraries built (in native/ beside this report)"]
    try:
        files = sorted(os.listdir(args.native))
    except OSError:
        files = []
    md += [f"- {f}: {os.path.getsize(os.path.join(args.native, f)):,} bytes" for f in files] or ["- none"]
    with open(args.out, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
