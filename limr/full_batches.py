"""Whole rollout batches for the stage-2 runs (LIMR, RAND, LINEAR): a prompt file of successive seeded shuffles.

OpenRLHF 0.11.2 keeps each pass's last, partial batch (trainer/ppo_utils/samples_generator.py, SamplesGenerator), so
1,389 prompts at a rollout batch of 1,024 alternate steps of 1,024 and 365 prompts, where the paper's fork gave every
step 1,024. The stage-2 runs need no epochs (LIM reads only FULL's), so they train on this file, read in one episode:
`steps x batch` rows cut from successive shuffles of the subset (each a fresh permutation from one seeded generator),
so every step is a full batch and every prompt appears equally often, within one. OpenRLHF's prompt loader shuffles
the file as a whole (ppo_trainer.prepare_datasets: setup_dataloader(..., shuffle=True)), so a step may hold a prompt
twice; the counts are what this file fixes. Rows are copied byte for byte (limr/dataset.py wrote them).

    python -m limr.full_batches --prompts outputs/lim/limr.jsonl --batch 1024 --steps 189 --seed 42 \\
        --output outputs/limr/prompts.full_batches.jsonl
"""

import argparse
import random
import sys
from pathlib import Path

from limr.cli import same_file
from limr.jsonio import atomic_write


def full_batch_rows(rows: list, batch: int, steps: int, seed: int) -> list:
    """`steps * batch` rows: successive shuffles of `rows` (one seeded generator), cut after the last whole batch."""
    if not rows:
        raise ValueError("no prompts to draw from")
    if batch < 1 or steps < 1:
        raise ValueError(f"batch and steps must be >= 1, got {batch} and {steps}")
    rng = random.Random(seed)
    out: list = []
    while len(out) < batch * steps:
        order = list(range(len(rows)))
        rng.shuffle(order)
        out.extend(rows[i] for i in order)
    return out[: batch * steps]


def write_full_batches(prompts: Path, output: Path, batch: int, steps: int, seed: int) -> int:
    """Write the file atomically (never a half-written one, never over its input); returns its row count."""
    if same_file(output, prompts):
        raise ValueError(f"--output would overwrite its input {prompts}")
    lines = [line if line.endswith("\n") else line + "\n" for line in prompts.read_text().splitlines() if line.strip()]
    rows = full_batch_rows(lines, batch, steps, seed)
    with atomic_write(output) as f:
        f.writelines(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=Path, required=True, help="the subset's OpenRLHF prompt file (JSONL)")
    p.add_argument("--output", type=Path, required=True, help="the training file to write (JSONL)")
    p.add_argument("--batch", type=int, required=True, help="prompts per rollout batch (--rollout.batch_size)")
    p.add_argument("--steps", type=int, required=True, help="PPO steps: the file has steps x batch rows")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    try:
        n = write_full_batches(a.prompts, a.output, a.batch, a.steps, a.seed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.output}: {n} rows = {a.steps} steps of {a.batch} prompts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
