"""Selection against a known truth: the scoring half of the pipeline on a simulated first run, in seconds.

    python scripts/demo.py                   # what `make selection-demo` runs
    python scripts/demo.py --prompts 1000 --epochs 21 --out outputs/demo-big

The whole loop with real training is mini/run.py (`make demo`). Here stage 1 is simulated instead, so that every
prompt's kind is known: synthetic arithmetic prompts, each with a hidden learning curve (learnable at some epoch, already solved, never solved, or noisy), and a simulated
policy that writes responses accordingly: the right or a wrong answer in `\\boxed{}`, sometimes no box or
cut off. Everything after that is the real pipeline: the responses are scored by the paper's reward in
grading workers (limr.pool), logged line by line in the rollout-log format the reward server writes,
and `lim_selection.py` selects from that log: LIM at θ, then every method at LIM's size. Since the simulation
knows each prompt's hidden kind, the demo ends with a table of what each method picked.
Outputs land in --out (default outputs/demo): prompts.json, kinds.json, rollouts.jsonl, lim_selection's
outputs (limr.*), compare/ (the overlap of all methods) and methods/ (one selection per method).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from limr.dataset import write_prompt_files
from limr.jsonio import atomic_write, read_json, write_json
from limr.pool import GradingPool

REPO = Path(__file__).resolve().parents[1]
EOS = "<|im_end|>"
KINDS = {"learnable": 0.45, "solved": 0.2, "unsolved": 0.2, "noisy": 0.15}


def make_prompts(n: int, rng: random.Random) -> list[dict]:
    prompts = []
    for i in range(n):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(1, 999)
        prompts.append(
            {
                "id": f"demo-{i:05d}",
                "prompt": f"What is ${a} \\times {b} + {c}$?",
                "answer": str(a * b + c),
                "source": "demo",
            }
        )
    return prompts


def solve_curves(prompts: list[dict], epochs: int, rng: random.Random) -> tuple[dict, dict]:
    """A hidden kind and probability of solving each prompt at each epoch."""
    curves, kind_of = {}, {}
    kinds, weights = zip(*KINDS.items(), strict=True)
    for p in prompts:
        kind = kind_of[p["id"]] = rng.choices(kinds, weights)[0]
        if kind == "learnable":
            onset, rate = rng.uniform(1, epochs * 0.8), rng.uniform(0.4, 1.5)
            curve = [0.05 + 0.9 / (1 + math.exp(-rate * (k - onset))) for k in range(epochs)]
        elif kind == "solved":
            curve = [rng.uniform(0.85, 1.0)] * epochs
        elif kind == "unsolved":
            curve = [rng.uniform(0.0, 0.05)] * epochs
        else:
            curve = [rng.uniform(0.1, 0.9) for _ in range(epochs)]
        curves[p["id"]] = curve
    return curves, kind_of


def respond(prompt: dict, p_solve: float, rng: random.Random) -> str:
    """One simulated response: reasoning, then a right or wrong boxed answer; now and then a format error."""
    answer = int(prompt["answer"])
    guess = answer if rng.random() < p_solve else answer + rng.choice([-1, 1]) * rng.randint(1, 20)
    text = f"We compute step by step. {prompt['prompt'][8:-2]} gives {guess}.\nSo the answer is $\\boxed{{{guess}}}$."
    roll = rng.random()
    if roll < 0.03:
        return text.replace("\\boxed", "") + EOS  # forgot the box
    if roll < 0.05:
        return text  # cut off: no end-of-turn marker
    return text + EOS


def simulate_run(prompts, curves, args, log_path: Path, rng: random.Random) -> int:
    """Stage 1: every epoch visits every prompt once, in steps_per_epoch shuffled batches."""
    batch = math.ceil(len(prompts) / args.steps_per_epoch)
    lines = 0
    with GradingPool() as pool, atomic_write(log_path) as log:
        for epoch in range(args.epochs):
            order = prompts[:]
            rng.shuffle(order)
            for s in range(args.steps_per_epoch):
                step = epoch * args.steps_per_epoch + s + 1
                jobs = [
                    (p, respond(p, curves[p["id"]][epoch], rng))
                    for p in order[s * batch : (s + 1) * batch]
                    for _ in range(args.samples)
                ]
                graded = pool.map(((text, p["answer"]) for p, text in jobs), progress=f"epoch {epoch + 1} step {step}")
                for (p, text), g in zip(jobs, graded, strict=True):
                    row = {
                        "step": step,
                        "epoch": epoch + 1,  # as the reward server writes it: no --steps_per_epoch for LIM
                        "id": p["id"],
                        "reward": g.reward,
                        "correct": g.correct,
                        "response_length": len(text),
                        "format_error": g.format_error,
                    }
                    log.write(json.dumps(row) + "\n")
                    lines += 1
    return lines


def run(cmd: list[str]) -> None:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--steps_per_epoch", type=int, default=2)
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt per step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "demo")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    print(f"== stage 1 (simulated): {args.prompts} prompts x {args.epochs} epochs x {args.samples} samples ==")
    prompts = make_prompts(args.prompts, rng)
    write_prompt_files(out / "prompts.json", prompts)
    curves, kind_of = solve_curves(prompts, args.epochs, rng)
    write_json(out / "kinds.json", kind_of)
    lines = simulate_run(prompts, curves, args, out / "rollouts.jsonl", rng)
    print(f"rollout log: {lines} lines -> {out / 'rollouts.jsonl'}")

    print("== stage 2: LIM selection ==")
    common = [
        "--train_samples_path",
        out / "rollouts.jsonl",
        "--original_prompts_path",
        out / "prompts.json",
        "--max_epochs",
        args.epochs,
    ]
    run([sys.executable, "lim_selection.py", *common, "--output_path", out / "limr.json"])
    print("== stage 2b: every method at LIM's size, and what each picked ==")
    k = len(read_json(out / "limr.json"))
    run([sys.executable, "lim_selection.py", *common, "--output_path", out / "compare" / "limr.json", "--compare"])
    picked = {}
    for method in ("lim", "linear", "rand", "variance", "learnability"):
        path = out / "methods" / f"{method}.json"
        run(
            [
                sys.executable,
                "lim_selection.py",
                *common,
                "--method",
                method,
                "--num_samples",
                k,
                "--output_path",
                path,
                "--no_plots",
            ]
        )
        picked[method] = Counter(kind_of[row["id"]] for row in read_json(path))
    print(f"\nhidden kind of the {k} prompts each method selected (the simulation knows; LIM does not):")
    print(f"| method | {' | '.join(KINDS)} |")
    print("|---" * (len(KINDS) + 1) + "|")
    for method, counts in picked.items():
        print(f"| {method} | {' | '.join(str(counts[kind]) for kind in KINDS)} |")
    print(f"\ndone: outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
