"""python mini/tune.py --run outputs/mini --design NAME:rl_lr=X,gain_lr=Y [--design ...] [--rl_seeds 0,1]

Choose an RL design on validation, never on the held-out set: from a finished mini/run.py folder (its warm-up, pool
and validation set), train FULL once per design and RL seed (stage 2's steps, batch and group; only the named
settings change), evaluate each on the validation set (greedy and the primary protocol's temperature), and print a
table: mean validation accuracy per design over the RL seeds. Outputs go to <run>/tune/. The held-out set is not read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TUNABLE = {"rl_lr": float, "gain_lr": float, "stage2_steps": int, "batch": int}


def design(text: str) -> tuple[str, dict]:
    """NAME:key=value,key=value over TUNABLE's keys."""
    name, _, body = text.partition(":")
    changes = {}
    for part in filter(None, body.split(",")):
        key, _, value = part.partition("=")
        if key not in TUNABLE:
            raise argparse.ArgumentTypeError(f"{key!r} is not tunable here ({', '.join(TUNABLE)})")
        changes[key] = TUNABLE[key](value)
    if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise argparse.ArgumentTypeError(f"{name!r} is not a design name")
    return name, changes


def main(argv=None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from mini.numerics import pin_cpu_numerics

    print(pin_cpu_numerics(), flush=True)
    from limr.jsonio import read_json, write_json
    from mini.report import final_folder, score_matrix
    from mini.run import EVAL_BATCH, SAMPLED, VAL, bench_name, run_logged, side_by_side

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a finished mini/run.py output folder (one seed)")
    p.add_argument("--design", type=design, action="append", required=True)
    p.add_argument("--rl_seeds", default="0,1", help="RL seeds per design (the warm-up stays the run's)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    base = read_json(args.run / "jobs" / "full.json")
    data, out = args.run / "data", args.run / "tune"
    benches = [bench_name(VAL, 0), bench_name(VAL, SAMPLED[0])]
    chains, cells = {}, {}
    for name, changes in args.design:
        for rl_seed in (int(s) for s in args.rl_seeds.split(",")):
            tag = f"{name}-seed{rl_seed}"
            job = {**base, "cfg": {**base["cfg"], **changes}, "seed": rl_seed, "rollout_log": str(out / tag / "rollouts.jsonl"),
                   "ckpt_dir": str(out / tag / "ckpt")}  # fmt: skip
            if "stage2_steps" in changes:
                job["steps"] = changes["stage2_steps"]
            write_json(out / tag / "job.json", job)
            train = [sys.executable, "-m", "mini.grpo", out / tag / "job.json"]
            evaluate = ["bash", ROOT / "eval" / "eval.sh", "--data_dir", data, "--settings", data / "validation.json",
                        "--benchmarks", ",".join(benches), "--out", out / tag / "eval", "--run_path", out / tag / "ckpt", "--name", tag,
                        "--seed", rl_seed, "--workers", 1, "--batch_size", EVAL_BATCH]  # fmt: skip

            def chain(train=train, evaluate=evaluate, tag=tag):
                run_logged(train, out / tag / "train.log")
                run_logged(evaluate, out / tag / "eval.log")

            chains[tag] = chain
            cells[tag] = name
    side_by_side(chains, args.jobs, {})
    table: dict[str, dict[str, list[float]]] = {}
    for tag, name in cells.items():
        folder = final_folder(out / tag / "eval", tag)
        for b in benches:
            table.setdefault(name, {}).setdefault(b, []).append(
                round(100 * float(score_matrix(folder / f"{b}.jsonl").mean()), 2)
            )
    print("\nvalidation accuracy %, FULL, per RL seed (mean):")
    for name, by_bench in table.items():
        print(f"  {name:12} " + "  ".join(f"{b}: {v} ({sum(v) / len(v):.1f})" for b, v in by_bench.items()))
    write_json(out / "tune.json", {"designs": dict(args.design), "validation": table})
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
