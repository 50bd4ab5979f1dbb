"""Time lim_selection.py against the original script's approach on the same paper-scale log, in one run.

    python benchmarks/gen_rollouts.py --out outputs/bench --prompts_path data/math8k.json   # 2.7 GB, ~20 s
    python benchmarks/bench_lim_selection.py --data outputs/bench

Each run is its own process; wall time, CPU time (user + system: steadier than wall time on a shared machine) and
peak memory (max RSS) come from os.wait4:
  baseline     the original approach, re-implemented here (GAIR-NLP/LIMR lim/lim_selection.py): json.load every
               step file and keep every sample of the run in memory, then score in Python
  steps        lim_selection.py on the same step files (one at a time)
  jsonl        lim_selection.py on the same samples as our rollout log (its lines say their epoch)
  verl         lim_selection.py on the same samples as verl's rollout dumps, joined by prompt text (when the data
               has them: gen_rollouts.py --verl)
  steps@K, jsonl@K   the same with fewer epochs / a log cut after K epochs: time per sample should stay flat
The full runs must select the same prompt texts. Results are printed and saved as JSON (--out).
Performance claims are ratios to the baseline measured in the same run, never absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: limr is importable

from limr.paper import THETA  # noqa: E402


def baseline(steps_dir: Path, prompts_path: Path, output: Path, steps_per_epoch: int, max_epochs: int, theta: float):
    """The original script's approach: every step file loaded and kept, accuracies by prompt text, scores, selection.

    Kept: its data flow (all epochs in memory before scoring), its forward fill and its >= threshold. Fixed only
    where it would crash on good data: prompts are stripped on both sides.
    """
    epochs, current = [], []
    for step in range(1, steps_per_epoch * max_epochs + 1):
        with open(steps_dir / f"step_{step}.json", encoding="utf-8") as f:
            current.extend(json.load(f))
        if step % steps_per_epoch == 0:
            epochs.append(current)
            current = []
    prompts = {s["prompt"].strip() for epoch in epochs for s in epoch}
    histories = {p: [] for p in prompts}
    for epoch in epochs:
        counts = {p: [0, 0] for p in prompts}
        for s in epoch:
            c = counts[s["prompt"].strip()]
            c[1] += 1
            c[0] += s["reward"] == 1
        for p, (correct, total) in counts.items():
            histories[p].append(correct / total if total else -1)
    for h in histories.values():
        for i in range(len(h) - 1):
            if h[i] == -1 and h[i + 1] != -1:
                h[i] = h[i + 1]
    valid = {p: h for p, h in histories.items() if -1 not in h}
    mean = [sum(col) / len(valid) for col in zip(*valid.values(), strict=True)]
    denominator = sum((1 - m) ** 2 for m in mean)
    selected = {
        p
        for p, h in valid.items()
        if 1 - sum((a - m) ** 2 for a, m in zip(h, mean, strict=True)) / denominator >= theta
    }
    items = json.loads(prompts_path.read_text(encoding="utf-8"))
    output.write_text(json.dumps([it for it in items if it["prompt"].strip() in selected]), encoding="utf-8")


def timed(cmd: list[str]) -> dict:
    """Run cmd in a child process; its wall and CPU time and peak RSS (os.wait4 reports the child's own usage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_mb": round(usage.ru_maxrss / 1024, 1)}


def cut_log(log: Path, out: Path, last_step: int) -> int:
    """Copy the lines of steps <= last_step (the log is in step order); returns the number of lines."""
    n = 0
    with open(log, "rb") as src, open(out, "wb") as dst:
        for line in src:
            if json.loads(line)["step"] > last_step:
                break
            dst.write(line)
            n += 1
    return n


def linear_fit(runs: dict, fmt: str) -> dict:
    """Least-squares wall = fixed + per_sample * samples over the full and cut runs: linear if the fit is tight."""
    points = [(r["samples"], r["wall_s"]) for name, r in runs.items() if name.split("@")[0] == fmt]
    (x0, y0), n = zip(*points, strict=True), len(points)
    mx, my = sum(x0) / n, sum(y0) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    worst = max(abs(y - (my + slope * (x - mx))) / y for x, y in points)
    return {"s_per_million_samples": round(slope * 1e6, 3), "fixed_s": round(my - slope * mx, 3),
            "worst_relative_error": round(worst, 3)}  # fmt: skip


def selected_texts(path: Path) -> set[str]:
    return {it["prompt"].strip() for it in json.loads(path.read_text(encoding="utf-8"))}


def run(args) -> dict:
    data, work = Path(args.data), Path(args.data) / "bench"
    work.mkdir(exist_ok=True)
    prompts, steps, log = data / "prompts.json", data / "steps", data / "rollouts.jsonl"
    spe, epochs = args.steps_per_epoch, args.max_epochs
    n_samples = sum(1 for _ in open(log, "rb"))
    ours = [sys.executable, str(ROOT / "lim_selection.py"), "--original_prompts_path", str(prompts), "--no_plots"]
    per_epoch = {"steps": ["--steps_per_epoch", str(spe)], "jsonl": [], "verl": ["--steps_per_epoch", str(spe)]}
    formats = [("steps", steps), ("jsonl", log)] + ([("verl", data / "verl")] if (data / "verl").is_dir() else [])

    results = {"samples": n_samples, "epochs": epochs, "steps_per_epoch": spe, "runs": {}}
    runs = results["runs"]
    if not args.skip_baseline:
        cmd = [sys.executable, __file__, "--baseline", str(data), "--out", str(work / "baseline.json")]
        runs["baseline"] = timed(cmd + ["--steps_per_epoch", str(spe), "--max_epochs", str(epochs)])
    for name, source in formats:
        out = ["--max_epochs", str(epochs), "--output_path", str(work / f"{name}.json"), *per_epoch[name]]
        runs[name] = timed([*ours, "--train_samples_path", str(source), *out])
    for k in args.partial_epochs:  # linearity: a third, two thirds ... of the log
        runs[f"steps@{k}"] = timed([*ours, "--train_samples_path", str(steps), "--max_epochs", str(k),
                                    "--output_path", str(work / f"steps{k}.json"), *per_epoch["steps"]])  # fmt: skip
        part = work / f"rollouts_{k}.jsonl"
        runs[f"jsonl@{k}"] = {"samples": cut_log(log, part, k * spe)}
        runs[f"jsonl@{k}"].update(timed([*ours, "--train_samples_path", str(part), "--max_epochs", str(k),
                                         "--output_path", str(work / f"jsonl{k}.json")]))  # fmt: skip
        part.unlink()
    for name, r in runs.items():
        r.setdefault("samples", n_samples * int(name.split("@")[1]) // epochs if "@" in name else n_samples)
        r["us_per_sample"] = round(r["wall_s"] / r["samples"] * 1e6, 3)
        if "baseline" in runs:
            r["speedup"] = round(runs["baseline"]["wall_s"] / r["wall_s"], 2)
            r["cpu_speedup"] = round(runs["baseline"]["cpu_s"] / r["cpu_s"], 2)
    results["linear_fit"] = {fmt: linear_fit(runs, fmt) for fmt in ("steps", "jsonl") if args.partial_epochs}
    picks = {
        name: selected_texts(work / f"{name}.json") for name in ("baseline", "steps", "jsonl", "verl") if name in runs
    }
    results["same_selection"] = all(p == picks["steps"] for p in picks.values())
    results["selected"] = {name: len(p) for name, p in picks.items()}
    return results


def print_table(results: dict) -> None:
    print(f"{results['samples']:,} samples, {results['epochs']} epochs x {results['steps_per_epoch']} steps")
    print(f"{'run':<12}{'wall s':>9}{'CPU s':>9}{'peak MB':>10}{'us/sample':>11}{'vs baseline':>13}{'(CPU)':>8}")
    for name, r in results["runs"].items():
        ratio = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        cpu_ratio = f"{r['cpu_speedup']:.1f}x" if "cpu_speedup" in r else "-"
        print(f"{name:<12}{r['wall_s']:>9.2f}{r['cpu_s']:>9.2f}{r['peak_mb']:>10.0f}{r['us_per_sample']:>11.2f}"
              f"{ratio:>13}{cpu_ratio:>8}")  # fmt: skip
    for fmt, fit in results.get("linear_fit", {}).items():
        print(f"{fmt}: wall = {fit['fixed_s']:.2f} s + {fit['s_per_million_samples']:.2f} s per million samples "
              f"(worst point off by {fit['worst_relative_error']:.0%})")  # fmt: skip
    print(f"selected: {results['selected']}; same prompts: {results['same_selection']}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="a folder written by gen_rollouts.py (prompts.json, steps/, rollouts.jsonl)")
    p.add_argument("--steps_per_epoch", type=int, default=8)
    p.add_argument("--max_epochs", type=int, default=21)
    p.add_argument("--partial_epochs", type=lambda s: [int(x) for x in s.split(",") if x], default=[7, 14],
                   help="also time the first K epochs, for each K (comma-separated; empty for none)")  # fmt: skip
    p.add_argument("--skip_baseline", action="store_true", help="skip the slow original approach")
    p.add_argument("--out", help="results JSON (default: <data>/bench/results.json); with --baseline: its output")
    p.add_argument("--baseline", metavar="DATA", help=argparse.SUPPRESS)  # child mode: run the baseline only
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.baseline:
        data = Path(args.baseline)
        baseline(data / "steps", data / "prompts.json", Path(args.out), args.steps_per_epoch, args.max_epochs, THETA)
        return 0
    if not args.data:
        raise SystemExit("--data is required (make one with benchmarks/gen_rollouts.py)")
    results = run(args)
    print_table(results)
    out = Path(args.out) if args.out else Path(args.data) / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
