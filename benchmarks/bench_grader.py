"""Grade one PPO step's worth of responses three ways, in one run, and compare speed and verdicts.

    python benchmarks/bench_grader.py                       # 8,192 responses: half correct, then all wrong
    python benchmarks/bench_grader.py --n 1024 --mixes half # quicker

The responses are synthetic but shaped like the policy's: ~1,500 characters of reasoning about a real
MATH-8k prompt, ending in `\\boxed{...}` and Qwen's end-of-turn marker. Correct ones box the gold answer as
written or in an equivalent form a model produces (`\\dfrac`, a decimal for a fraction, `x = ...`, spacing,
`\\left(`, a thousands separator, `^\\circ`, a unit in `\\text{}`); wrong ones box a nearby number or another
prompt's answer. Three graders, same inputs:
  ours        limr.pool.GradingPool (all CPU cores): the full paper reward, format rules included
  math-verify verify(parse(\\boxed{gold}), parse(response)) called directly, one process (TRL's pattern)
  openrlhf    OpenRLHF 0.11's `grade_answer(extract_boxed_answer(response), gold)`, one process
Ratios are against math-verify in the same run. Then the size guard's cost (`limr.grader.too_large`, which
refuses power towers before sympy sees them): the same responses graded in this process by `limr.grader.grade`
with the guard and with it replaced by a no-op, chunk by chunk in alternating order with the parse caches
cleared before each (so that the machine's drifting load falls on both), and the guard's own time over every text
it was asked about. Needs `pip install openrlhf==0.11.2 --no-deps pylatexenc`
for the third column (skipped with a note otherwise) and MATH-8k from `python data/prepare.py`
(or `--prompts ../shared/data/limr-release/math8k.json`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

from limr.jsonio import read_json
from limr.pool import GradingPool

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROMPTS = [REPO / "data" / "math8k.json", REPO.parent / "shared" / "data" / "limr-release" / "math8k.json"]
EOS = "<|im_end|>"

_STEPS = [
    "First, let us restate what is given in the problem and set up the notation we need.",
    "We can simplify the expression by combining like terms and factoring where possible.",
    "Substituting the known values gives us an equation in a single unknown.",
    "Checking the boundary cases confirms that no other values satisfy the conditions.",
    "By symmetry, it suffices to consider the case where the first quantity is the larger one.",
    "Multiplying both sides by the common denominator removes the fractions.",
    "This is a standard application of the counting principle, with care for overcounting.",
    "The discriminant must be non-negative, which restricts the admissible range.",
    "Now we compute each term separately and add the results together.",
    "Finally, we verify the result against the original conditions of the problem.",
]


def reasoning(prompt: str, rng: random.Random, chars: int = 1500) -> str:
    """Varied sentences (never one chunk five times in a row) with the prompt's own math mixed in."""
    maths = re.findall(r"\$[^$]{3,60}\$", prompt) or ["$x$"]
    parts, size = [], 0
    while size < chars:
        s = rng.choice(_STEPS)
        if rng.random() < 0.6:
            s += f" Here {rng.choice(maths)} equals ${rng.randint(2, 999)} \\cdot {rng.randint(2, 99)}$."
        parts.append(s)
        size += len(s) + 1
    return "\n".join(parts)


def equivalent_form(gold: str, rng: random.Random) -> str:
    """The gold answer as written, or rewritten the way a model might write the same value."""
    rewrites = [lambda g: g] * 4
    if r"\frac" in gold:
        rewrites.append(lambda g: g.replace(r"\frac", r"\dfrac"))
        rewrites.append(lambda g: g.replace(r"\frac", r"\tfrac"))
    if re.search(r"\\sqrt\{\d\}", gold):  # `\sqrt 2` is `\sqrt{2}`, but `\sqrt 11` is `\sqrt{1}1`
        rewrites.append(lambda g: re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt \1", g))
    m_simple = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", gold)
    if m_simple:
        rewrites.append(lambda g: f"{m_simple.group(1)}/{m_simple.group(2)}")
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(2|4|5|8|10|20|25)\}", gold)
    if m:
        rewrites.append(lambda g: f"{int(m.group(1)) / int(m.group(2)):g}")
    if re.fullmatch(r"-?\d+", gold):
        rewrites.append(lambda g: f"x = {g}")
        rewrites.append(lambda g: f"{g}^\\circ" if rng.random() < 0.5 else f"{g} \\text{{ units}}")
        if len(gold.lstrip("-")) > 3:
            rewrites.append(lambda g: f"{int(g):,}")
    thousands = "\\!" in gold or re.fullmatch(r"-?\d{1,3}(?:,\d{3})+", gold)  # `32,\!000`, `1,000`
    if not thousands and (re.fullmatch(r"[^()\[\]{}]+(?:,[^()\[\]{}]+)+", gold) or gold.startswith("\\{")):
        # all solutions (`-3, 5`) or a set: the order is free
        inner = gold[2:-2] if gold.startswith("\\{") else gold
        swapped = ", ".join(reversed([x.strip() for x in inner.split(",")]))
        rewrites.append(lambda g: "\\{" + swapped + "\\}" if g.startswith("\\{") else swapped)
    if "," in gold and not thousands:
        rewrites.append(lambda g: g.replace(", ", ",") if ", " in g else g.replace(",", ", "))
    if gold.startswith("(") and gold.endswith(")"):
        rewrites.append(lambda g: r"\left" + g[:-1] + r"\right)")
    return rng.choice(rewrites)(gold)


def wrong_form(gold: str, others: list[str], rng: random.Random) -> str:
    if re.fullmatch(r"-?\d+", gold) and rng.random() < 0.7:
        return str(int(gold) + rng.choice([-1, 1]) * rng.randint(1, 12))
    other = rng.choice(others)
    return other if other != gold else gold + "+1"


def make_responses(
    rows: list[dict], n: int, share_correct: float, seed: int, samples_per_prompt: int = 8
) -> list[tuple[str, str, bool]]:
    """n responses as in one PPO step: n / samples_per_prompt prompts, each sampled samples_per_prompt times."""
    rng = random.Random(seed)
    rows = [r for r in rows if r["answer"].strip()]
    others = [r["answer"] for r in rows]
    step_rows = rng.sample(rows, max(1, n // samples_per_prompt))
    out = []
    for i in range(n):
        row = step_rows[i % len(step_rows)]
        correct = rng.random() < share_correct
        boxed = equivalent_form(row["answer"], rng) if correct else wrong_form(row["answer"], others, rng)
        text = f"{reasoning(row['prompt'], rng)}\nTherefore the final answer is $\\boxed{{{boxed}}}$.{EOS}"
        out.append((text, row["answer"], correct))
    rng.shuffle(out)
    return out


def run_ours(items, workers: int):
    """Grading time of a warm pool (as in the reward server, which starts its pool once); startup printed apart."""
    start = time.perf_counter()
    with GradingPool(workers=workers) as pool:
        pool.map([("\\boxed{1}" + EOS, "1")] * workers)  # workers up, sympy imported
        ready = time.perf_counter()
        results = pool.map(((r, a) for r, a, _ in items), progress="ours")
        wall = time.perf_counter() - ready
    print(f"pool startup (forkserver, imports, {workers} workers): {ready - start:.2f} s, not counted below")
    return wall, [g.correct for g in results], [g.seconds for g in results], sum(g.timed_out for g in results)


def run_direct(items, grade_one, desc: str):
    from tqdm import tqdm

    verdicts, seconds = [], []
    start = time.perf_counter()
    for response, gold, _ in tqdm(items, desc=desc, unit="resp"):
        t = time.perf_counter()
        try:
            ok = bool(grade_one(response, gold))
        except Exception:
            ok = False
        seconds.append(time.perf_counter() - t)
        verdicts.append(ok)
    return time.perf_counter() - start, verdicts, seconds, 0


def run_guard_cost(items, rounds: int, chunk: int = 64) -> tuple[float, float, float, int]:
    """(seconds with the guard, seconds without, the guard's own seconds, its calls) grading `items` in-process.
    Each chunk of responses is graded both ways back to back, the order alternating, so that a shared machine's
    load, which drifts over seconds, falls on both alike."""
    from limr import grader

    guard = grader.too_large
    asked: list[str] = []

    def grade_chunk(check, part) -> float:
        grader.too_large = check
        for cache in (grader._parse_pred, grader._parse_gold, grader._parse_bare, grader.prepare_gold):
            cache.cache_clear()  # both ways parse afresh, as a new step's answers would be
        start = time.perf_counter()
        for response, gold, _ in part:
            grader.grade(response, gold)
        return time.perf_counter() - start

    totals = {"with": 0.0, "without": 0.0}
    try:
        grade_chunk(lambda text: asked.append(text) or guard(text), items)  # warm-up: the texts the guard sees
        for r in range(rounds):
            for i in range(0, len(items), chunk):
                ways = [("with", guard), ("without", lambda _: False)]
                for name, check in ways if (r + i // chunk) % 2 == 0 else ways[::-1]:
                    totals[name] += grade_chunk(check, items[i : i + chunk])
    finally:
        grader.too_large = guard
    start = time.perf_counter()
    for text in asked:
        guard(text)
    return totals["with"], totals["without"], time.perf_counter() - start, len(asked)


def math_verify_direct(response: str, gold: str) -> bool:
    from math_verify import parse, verify

    return verify(parse("\\boxed{" + gold + "}"), parse(response))


def load_openrlhf_grader():
    """OpenRLHF 0.11's math_utils, loaded from the installed file without running openrlhf/__init__ (torch)."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "utils" / "math_utils.py"
    mod_spec = importlib.util.spec_from_file_location("openrlhf_math_utils", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return lambda response, gold: module.grade_answer(module.extract_boxed_answer(response), gold)


def report(name: str, wall: float, verdicts, seconds, timeouts, truth, baseline: float | None) -> str:
    n_true = sum(truth)
    accepted_true = sum(v for v, t in zip(verdicts, truth, strict=True) if t)
    accepted_false = sum(v for v, t in zip(verdicts, truth, strict=True) if not t)
    q = statistics.quantiles(seconds, n=100)
    ratio = f"{baseline / wall:5.2f}x" if baseline else "   - "
    recall = f"{100 * accepted_true / n_true:5.1f}%" if n_true else "    -"
    return (
        f"| {name:<11} | {wall:7.2f} | {ratio} | {1000 * q[49]:6.2f} | {1000 * q[98]:7.2f} | {recall} "
        f"| {accepted_false:5d} | {timeouts:3d} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=8192, help="responses per mix (one PPO step: 1,024 prompts x 8)")
    p.add_argument("--mixes", default="half,wrong", help="comma list of: half (50%% correct), wrong (all wrong)")
    p.add_argument("--prompts", type=Path, default=None, help="MATH-8k prompt JSON")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--skip", default="", help="comma list of graders to skip: math-verify, openrlhf")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guard_rounds", type=int, default=3, help="rounds of the size guard's cost (0: skip it)")
    args = p.parse_args(argv)
    prompts = args.prompts or next((c for c in DEFAULT_PROMPTS if c.exists()), None)
    if prompts is None:
        print("error: no MATH-8k prompts; run `python data/prepare.py` or pass --prompts", file=sys.stderr)
        return 2
    rows = read_json(prompts)
    openrlhf_grade = None if "openrlhf" in args.skip else load_openrlhf_grader()
    print(f"{args.n} responses per mix from {prompts}, {args.workers} grading workers, {os.cpu_count()} cores")
    for mix in args.mixes.split(","):
        items = make_responses(rows, args.n, {"half": 0.5, "wrong": 0.0}[mix], args.seed)
        truth = [t for _, _, t in items]
        runs = {"ours": run_ours(items, args.workers)}
        if "math-verify" not in args.skip:
            runs["math-verify"] = run_direct(items, math_verify_direct, "math-verify")
        if openrlhf_grade is not None:
            runs["openrlhf"] = run_direct(items, openrlhf_grade, "openrlhf")
        baseline = runs.get("math-verify", (None,))[0]
        print(f"\nmix: {mix} ({sum(truth)} correct of {len(items)})")
        print("| grader      | wall s  | speedup | p50 ms | p99 ms  | recall | false+ | t/o |")
        print("|-------------|---------|---------|--------|---------|--------|--------|-----|")
        for name, (wall, verdicts, seconds, timeouts) in runs.items():
            print(report(name, wall, verdicts, seconds, timeouts, truth, baseline))
        if args.guard_rounds > 0:
            with_guard, without, own, calls = run_guard_cost(items, args.guard_rounds)
            print(f"size guard, limr.grader.grade in one process, {args.guard_rounds} rounds: with "
                  f"{with_guard:.2f} s, without {without:.2f} s, ratio {with_guard / without:.3f}; the guard itself "
                  f"{1000 * own:.1f} ms over {calls} texts ({100 * own / with_guard:.2f}% of grading)")  # fmt: skip
    if openrlhf_grade is None and "openrlhf" not in args.skip:
        print("\n(openrlhf column skipped: pip install openrlhf==0.11.2 --no-deps pylatexenc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
