"""Choose the stopping rule's form and parameters on simulated histories whose full selection is known.

    python scripts/stopping_sim.py                      # the grid behind limr/stopping.py's RULE (a minute or two)
    python scripts/stopping_sim.py --quick --out x.json # a small grid (tests)

Histories come from scripts/demo.py's simulator (hidden learning curves: learnable, always solved, never solved,
noisy), observed through sampling noise: each epoch's accuracy is Binomial(samples, p) / samples. Settings cross
pool sizes, epoch counts, samples per prompt per epoch (the noise) and the selection size K (the paper's share of
the pool, or half of it), with several seeds each. For every candidate rule (level x patience x window, limr.stopping) and
run it records where the rule stops and whether the stopped top-K is within Jaccard 0.85 of the top-K from all
epochs ("covered"; a run the rule never stops counts as covered with nothing saved).

The choice, declared before the search: among the rules covering >= 95% of the runs, the one with the largest mean
share of epochs saved. It prints the table and the chosen rule and writes every run's numbers to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
from pathlib import Path

import numpy as np

from limr.stability import jaccard
from limr.stopping import StoppingRule, Verdict, paper_size, select_top

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import solve_curves  # noqa: E402  (scripts/ is not a package: the simulator behind docs/selection.md)

TARGET = 0.85  # the stopped selection must be within this Jaccard of the full one
COVERAGE = 0.95  # ... in at least this share of the simulated runs
LEVELS = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
PATIENCES = (1, 2, 3, 4, 5, 6)
WINDOWS = (1, 2, 3, 5)  # compare with the selection this many epochs before
FULL = {"pools": (400, 1500, 5000), "epochs": (12, 21, 44), "samples": (4, 8, 16), "shares": ("paper", 0.5),
        "seeds": 4}  # fmt: skip
QUICK = {"pools": (200,), "epochs": (10,), "samples": (8,), "shares": ("paper",), "seeds": 2}


def simulate(pool: int, epochs: int, samples: int, seed: int) -> np.ndarray:
    """One stage 1 seen through sampling: prompts x epochs accuracy."""
    rng = random.Random(seed)
    curves, _ = solve_curves([{"id": str(i)} for i in range(pool)], epochs, rng)
    p = np.array([curves[str(i)] for i in range(pool)])
    return np.random.default_rng(seed).binomial(samples, p) / samples


def one_run(accuracy: np.ndarray, size: int) -> dict:
    """Every prefix's top-K once; each rule then only replays the Jaccard sequence."""
    epochs = accuracy.shape[1]
    selections = [select_top(accuracy[:, :j], size) for j in range(1, epochs + 1)]
    full = selections[-1]
    outcome = {}
    for level, patience, window in itertools.product(LEVELS, PATIENCES, WINDOWS):
        verdict = Verdict(StoppingRule(level, patience, window))
        for chosen in selections:
            verdict.add(chosen)
        stop = verdict.stop_epoch or epochs
        outcome[f"{level}/{patience}/{window}"] = {"stop": stop, "jaccard_full": jaccard(selections[stop - 1], full),
                                          "saved": 1 - stop / epochs}  # fmt: skip
    return outcome


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid, for tests")
    ap.add_argument("--out", type=Path, default=Path("outputs/stopping_sim.json"))
    args = ap.parse_args(argv)
    grid = QUICK if args.quick else FULL
    runs = []
    for pool, epochs, samples, share in itertools.product(grid["pools"], grid["epochs"], grid["samples"],
                                                          grid["shares"]):  # fmt: skip
        size = paper_size(pool) if share == "paper" else round(pool * share)
        for seed in range(grid["seeds"]):
            accuracy = simulate(pool, epochs, samples, seed)
            runs.append({"pool": pool, "epochs": epochs, "samples": samples, "share": share, "size": size,
                         "seed": seed, "rules": one_run(accuracy, size)})  # fmt: skip
        print(f"pool {pool}, {epochs} epochs, {samples} samples, K {size}: {grid['seeds']} runs", flush=True)
    table = []
    for name in runs[0]["rules"]:
        got = [r["rules"][name] for r in runs]
        covered = statistics.fmean(g["jaccard_full"] >= TARGET for g in got)
        table.append({"rule": name, "coverage": covered, "saved_mean": statistics.fmean(g["saved"] for g in got),
                      "jaccard_min": min(g["jaccard_full"] for g in got),
                      "never_stopped": statistics.fmean(g["saved"] == 0 for g in got)})  # fmt: skip
    eligible = [t for t in table if t["coverage"] >= COVERAGE]
    chosen = max(eligible, key=lambda t: t["saved_mean"]) if eligible else None
    print(
        f"\n{len(runs)} simulated runs; rule = level/patience/window; covered: stopped top-K within Jaccard {TARGET} of all"
    )
    print("| rule | coverage | epochs saved (mean) | worst Jaccard | never stopped |\n|---|---|---|---|---|")
    shown = sorted(eligible, key=lambda t: -t["saved_mean"])[:8]  # the best eligible, then each window's best
    for window in WINDOWS:
        mine = [t for t in table if t["rule"].endswith(f"/{window}")]
        best = max((t for t in mine if t in eligible), key=lambda t: t["saved_mean"], default=None)
        shown += [t for t in (best, max(mine, key=lambda t: t["coverage"] - t["saved_mean"] * 0)) if t]
    for t in dict((t["rule"], t) for t in shown).values():
        mark = " *" if chosen is t else ""
        print(f"| {t['rule']}{mark} | {t['coverage']:.1%} | {t['saved_mean']:.1%} | {t['jaccard_min']:.3f} | "
              f"{t['never_stopped']:.1%} |")  # fmt: skip
    if chosen:
        name = chosen["rule"]
        print(f"\nchosen (coverage >= {COVERAGE:.0%}, most saved): {name}")
        for key in ("pool", "epochs", "samples", "share"):
            for value in dict.fromkeys(r[key] for r in runs):
                got = [r["rules"][name] for r in runs if r[key] == value]
                print(f"  {key} {value}: coverage {statistics.fmean(g['jaccard_full'] >= TARGET for g in got):.1%}, "
                      f"saved {statistics.fmean(g['saved'] for g in got):.1%}, "
                      f"stop epoch median {statistics.median(g['stop'] for g in got)}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"grid": grid, "target": TARGET, "coverage_needed": COVERAGE,
                                    "chosen": chosen, "table": table, "runs": runs}) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
