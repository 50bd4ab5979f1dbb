"""Generate a synthetic first-run log at paper scale, in both formats `lim_selection.py` reads.

    python benchmarks/gen_rollouts.py --out outputs/bench --scale 1.0          # 8,523 prompts x 21 epochs x 8 samples
    python benchmarks/gen_rollouts.py --out /tmp/tiny --scale 0.01 --epochs 3  # a tiny one for tests

Writes, under --out:
  prompts.json      the prompt file {id, prompt, answer, source}: MATH-8k itself when --prompts_path is given
  steps/step_{k}.json   the paper's fork format: one JSON list per training step of
                    {"prompt", "response", "reward", "response_length"}, written as the fork did (json.dump, indent=4)
  rollouts.jsonl    our rollout log: one line per sample {"step", "epoch", "id", "reward", "correct", ...}
  verl/{k}.jsonl    with --verl: verl's rollout dumps in the v1 loop's shape (no prompt id; the prompt inside its
                    chat template as verl decodes it; limr/verl_dumps.py), one line per sample

The schedule mirrors the paper's run: every epoch the prompts are shuffled and the first
rollout_batch x steps_per_epoch of them (1,024 x 8 = 8,192 of 8,523) are sampled, 8 times each, so about 4%
of the prompts miss each epoch; LIM's fill rule then leaves ~7,980 prompts with a full history, close to the
7,935 of the released scores.json. Each prompt follows a latent accuracy curve (solved, unsolved, learned at a
random epoch, noisy, forgotten) and each sample is a Bernoulli draw from it; rewards are 1 / -0.5 / -1 (§2.4).
Responses come from a small pool of math-like texts (~1,500 characters with LaTeX, newlines, a few quotes and
non-ASCII characters) so the files have the size and escapes of real ones without the cost of making them.
Generated logs go under outputs/ or a temp dir, never into git.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: limr is importable

from limr.paper import SYSTEM_PROMPT  # noqa: E402

PAPER_PROMPTS = 8523  # MATH-8k
PAPER_ROLLOUT_BATCH = 1024  # prompts per step (paper §3.1)

FRAGMENTS = [
    "To solve this problem, we first rewrite the expression.\n\n",
    "We have $x^2 + 5x + 6 = (x + 2)(x + 3)$, so the roots are $-2$ and $-3$. ",
    "Using the identity $\\sin^2 \\theta + \\cos^2 \\theta = 1$, we get ",
    "\\[\n\\frac{a + b}{c} = \\frac{12}{\\sqrt{13}} \\cdot \\left( 1 - \\frac{1}{n} \\right)\n\\]\n",
    'Let\'s check the "edge" case separately. ',
    "The area is $\\pi r^2 = 16\\pi$ square units. ",
    "By the triangle inequality, $|a - b| \\le |a| + |b|$. ",
    "Step 2: Substitute back: $3 \u00d7 7 \u2212 4 = 17$.\n",
    "\\begin{align*}\ny &= 2x - 1 \\\\\n&= 7\n\\end{align*}\n",
    "Therefore, the final answer is $\\boxed{42}$.",
]


def response_pool(rng: random.Random, size: int, mean_chars: int) -> list[str]:
    pool = []
    for _ in range(size):
        target = max(20, int(rng.gauss(mean_chars, mean_chars / 4)))
        text = ""
        while len(text) < target:
            text += rng.choice(FRAGMENTS)
        pool.append(text[:target])
    return pool


def make_prompts(n: int, prompts_path: str | None, rng: random.Random) -> list[dict]:
    if prompts_path:
        items = json.loads(Path(prompts_path).read_text(encoding="utf-8"))
        return items[:n]
    return [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "prompt": f"Problem {i}: find all real $x$ such that \\[x^2 - {i % 97}x + \\frac{{{i % 13}}}{{2}} = 0.\\]",
            "answer": str(i % 97),
            "source": "synthetic",
        }
        for i in range(n)
    ]


def accuracy_curve(rng: random.Random, epochs: int) -> list[float]:
    """A latent per-epoch success probability for one prompt."""
    kind = rng.choices(["solved", "unsolved", "learned", "noisy", "forgotten"], weights=[30, 15, 35, 15, 5])[0]
    if kind == "solved":
        return [rng.uniform(0.85, 1.0)] * epochs
    if kind == "unsolved":
        return [rng.uniform(0.0, 0.05)] * epochs
    if kind == "noisy":
        return [rng.uniform(0.2, 0.8)] * epochs
    mid, width = rng.uniform(0, epochs), rng.uniform(0.5, 4)
    rising = [1 / (1 + math.exp(-(e - mid) / width)) for e in range(epochs)]
    return rising if kind == "learned" else rising[::-1]


def schedule(ids: list[str], epochs: int, steps_per_epoch: int, rollout_batch: int, rng: random.Random):
    """Yield (step, prompt ids of that step): a fresh shuffle each epoch, the leftover prompts dropped."""
    for epoch in range(epochs):
        order = rng.sample(ids, len(ids))
        for s in range(steps_per_epoch):
            yield epoch * steps_per_epoch + s + 1, order[s * rollout_batch : (s + 1) * rollout_batch]


def sample_reward(rng: random.Random, p: float) -> float:
    if rng.random() < p:
        return 1.0
    return -1.0 if rng.random() < 0.15 else -0.5


def write_step_file(path: Path, rows: list[tuple[str, str, float, int]]) -> None:
    """Write [{"prompt", "response", "reward", "response_length"}, ...] exactly as json.dump(rows, f, indent=4) would.

    The strings come already JSON-encoded (json.dumps of each prompt and response once, not once per sample),
    which makes writing 2.5 GB take seconds instead of minutes; a test checks the bytes against json.dump.
    """
    objs = (
        f'    {{\n        "prompt": {p},\n        "response": {r},\n'
        f'        "reward": {reward!r},\n        "response_length": {length}\n    }}'
        for p, r, reward, length in rows
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(objs) + "\n]" if rows else "[]")


def generate(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    n_prompts = args.num_prompts or max(1, round(PAPER_PROMPTS * args.scale))
    rollout_batch = args.rollout_batch or max(1, round(PAPER_ROLLOUT_BATCH * args.scale))
    if rollout_batch * args.steps_per_epoch > n_prompts:
        raise SystemExit(f"rollout batch {rollout_batch} x {args.steps_per_epoch} steps > {n_prompts} prompts")
    out = Path(args.out)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    prompts = make_prompts(n_prompts, args.prompts_path, rng)
    (out / "prompts.json").write_text(json.dumps(prompts, ensure_ascii=False, indent=4), encoding="utf-8")

    by_id = {it["id"]: it for it in prompts}
    curve = {it["id"]: accuracy_curve(rng, args.epochs) for it in prompts}
    # the fork wrote prompts stripped (split_qa) and json.dump escaped non-ASCII: encode each string once
    enc_prompt = {i: json.dumps(it["prompt"].strip()) for i, it in by_id.items()}
    pool = response_pool(rng, 64, args.response_chars)
    enc_pool = [(json.dumps(r), len(r) // 4) for r in pool]  # ~4 characters per token
    write_steps, write_log = args.format in ("both", "steps"), args.format in ("both", "jsonl")
    if args.verl:  # verl's _write_generations: json.dumps(..., ensure_ascii=False) of input, output, gts, score, step
        (out / "verl").mkdir(exist_ok=True)
        dumped = {i: json.dumps(f"system\n{SYSTEM_PROMPT}\nuser\n{it['prompt']}\nassistant\n", ensure_ascii=False)
                  for i, it in by_id.items()}  # fmt: skip
        gts = {i: json.dumps(it["answer"], ensure_ascii=False) for i, it in by_id.items()}
        plain_pool = [json.dumps(r, ensure_ascii=False) for r in pool]

    n_samples = 0
    log = open(out / "rollouts.jsonl", "w", encoding="utf-8") if write_log else None
    try:
        for step, ids in schedule(list(by_id), args.epochs, args.steps_per_epoch, rollout_batch, rng):
            epoch = (step - 1) // args.steps_per_epoch
            rows, lines, dump = [], [], []
            for pid in ids:
                uid = uuid.UUID(int=rng.getrandbits(128)) if args.verl else None  # (the same draws without --verl)
                for k in range(args.samples):
                    reward = sample_reward(rng, curve[pid][epoch])
                    pick = rng.randrange(len(enc_pool))
                    response, length = enc_pool[pick]
                    rows.append((enc_prompt[pid], response, reward, length))
                    if args.verl:
                        dump.append(f'{{"input": {dumped[pid]}, "output": {plain_pool[pick]}, "gts": {gts[pid]}, '
                                    f'"score": {reward!r}, "step": {step}, "uid": "{uid}_{k}_0"}}\n')  # fmt: skip
                    lines.append(
                        f'{{"step": {step}, "epoch": {epoch + 1}, "id": {json.dumps(pid)}, "reward": {reward!r}, '
                        f'"correct": {"true" if reward == 1.0 else "false"}, "response_length": {length}, '
                        f'"extracted": "42", "split": "train"}}\n'
                    )
            n_samples += len(rows)
            if write_steps:
                write_step_file(out / "steps" / f"step_{step}.json", rows)
            if log:
                log.writelines(lines)
            if args.verl:
                (out / "verl" / f"{step}.jsonl").write_text("".join(dump), encoding="utf-8")
    finally:
        if log:
            log.close()
    return {"prompts": n_prompts, "rollout_batch": rollout_batch, "steps": args.epochs * args.steps_per_epoch,
            "samples": n_samples, "out": str(out)}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (use outputs/ or a temp dir)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's 8,523 prompts and 1,024 per step")
    p.add_argument("--num_prompts", type=int, default=0, help="override the prompt count")
    p.add_argument("--rollout_batch", type=int, default=0, help="override the prompts per step")
    p.add_argument("--epochs", type=int, default=21)
    p.add_argument("--steps_per_epoch", type=int, default=8)
    p.add_argument("--samples", type=int, default=8, help="samples per prompt")
    p.add_argument("--response_chars", type=int, default=1500, help="mean response length in characters")
    p.add_argument("--format", choices=["both", "steps", "jsonl"], default="both")
    p.add_argument("--verl", action="store_true", help="also write verl's rollout dumps (verl/{k}.jsonl)")
    p.add_argument("--prompts_path", help="take the prompts from this file (e.g. math8k.json) instead of making them")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    print(json.dumps(generate(parse_args(argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
