"""Time the miniature loop (mini/run.py) against an earlier commit's, stage by stage, in one run.

    python benchmarks/bench_demo.py                        # --size default (make demo): ~15 minutes on 2 cores
    python benchmarks/bench_demo.py --size tiny            # a few minutes
    python benchmarks/bench_demo.py --baseline fd0bfcf     # the commit to compare with (default: ccd57b6)

The baseline is checked out into a temporary git worktree and run with it first on PYTHONPATH (so its own mini/ and
limr/ are imported, with this checkout's .venv); then this checkout runs, same size, seed and --workers. Each run is
its own process; wall time and CPU time (user + system of the run and every process it waited for, from os.wait4)
are measured here, and each run's own stage times come from its timings.json. Where the two loops name their stages
differently (an older baseline), the table lists each as it names them; the ratio compares the whole loop: what
`make demo` costs.
Results are printed and saved as JSON (--out). Performance claims are ratios within one run, never absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "ccd57b6"  # main before the packed tokenizer (issue 21, item 6): a 113-token prompt, the same scheduler


def run_loop(code: Path, size: str, out: Path) -> dict:
    """mini/run.py of the checkout at `code` into `out`: wall and CPU seconds, and its own stage times."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(code / "mini" / "run.py"), "--size", size, "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {cmd[1]} failed; its output: {out.parent / f'{out.name}.log'}")
    stages = json.loads((out / "timings.json").read_text())["seconds"]
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "stages": stages}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("tiny", "default"), default="default")
    p.add_argument("--baseline", default=BASELINE, help=f"the git commit to compare with (default {BASELINE})")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_demo.json"))
    p.add_argument("--keep", type=Path, help="an empty folder to keep both runs' outputs in (default: deleted)")
    args = p.parse_args(argv)
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        raise SystemExit(f"error: {args.keep} is not empty")
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        worktree = Path(tmp) / "baseline"
        tmp = args.keep or Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline],
                       check=True, capture_output=True)  # fmt: skip
        try:
            results = {
                "baseline": run_loop(worktree, args.size, tmp / "baseline-out"),
                "this": run_loop(ROOT, args.size, tmp / "this-out"),
            }
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    base, this = results["baseline"], results["this"]
    body = {"size": args.size, "baseline_commit": args.baseline, **results,
            "wall_ratio": round(base["wall_s"] / this["wall_s"], 2), "cpu_ratio": round(base["cpu_s"] / this["cpu_s"], 2)}  # fmt: skip
    for name, r in results.items():
        print(f"{name:9} wall {r['wall_s']:7.1f} s  cpu {r['cpu_s']:7.1f} s  stages: {r['stages']}")
    print(
        f"the loop is {body['wall_ratio']}x faster in wall time than {args.baseline} (CPU time {body['cpu_ratio']}x)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
