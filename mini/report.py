"""The miniature's numbers with their noise, for one seed or a study of several (mini/run.py writes report.md/.json).

Each run's held-out accuracy under every protocol with a 95% interval, the paired differences that answer the
paper's questions (does RL help: FULL - warm-up; does the subset matter: each subset - FULL and - RAND) and issue
15's (does the cheap proxy do as well: LIMR - PASSRATE), stage 1's average learning curve, what LIM's threshold θ
keeps at this scale, PASSRATE's pass rates and overlap with LIMR, and each subset's difficulty mix. Intervals come
from limr.stats: a bootstrap over held-out questions and samples, seeds as strata; so they cover evaluation noise,
and the per-seed values beside them show the spread between trainings.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from limr.jsonio import read_json
from limr.paper import THETA
from limr.stats import Interval, excludes_zero, mean_ci, paired_diff_ci, read_question_scores, seeds_ci

RUN_ORDER = ("warmup", "full", "limr", "rand", "linear", "passrate")
# (run, against): RL itself, then the paper's comparisons of each subset with the whole pool and with chance, then
# LIM against the cheap proxy that needs no stage 1 (issue 15)
DIFFS = (("full", "warmup"), ("limr", "full"), ("rand", "full"), ("linear", "full"), ("passrate", "full"),
         ("limr", "rand"), ("linear", "rand"), ("passrate", "rand"), ("limr", "passrate"))  # fmt: skip
METHOD_FILES = {"limr": "lim", "rand": "rand", "linear": "linear", "passrate": "passrate"}


def score_matrix(path: Path) -> np.ndarray:
    """An eval/evaluate.py responses file as a (questions x samples) 0/1 array, questions sorted by id."""
    return np.array(list(read_question_scores(path).values()))


def final_folder(eval_dir: Path, run: str) -> Path:
    """The warm-up's base folder, or a run's last evaluated step."""
    if run == "warmup":
        return eval_dir / "warmup" / "base"
    steps = [int(p.name[4:]) for p in (eval_dir / run).glob("step*") if (p / "results.json").is_file()]
    return eval_dir / run / f"step{max(steps)}"


def level_mix(items: list[dict]) -> dict[str, int]:
    """How many prompts of each difficulty level (the task family's `source`, mini-level1..4)."""
    return dict(sorted(Counter(it["source"].removeprefix("mini-") for it in items).items()))


def seed_facts(out: Path, stage1_epochs: list[float]) -> dict:
    """What one seed's run says about selection: θ's count, the score distribution, the subsets' levels."""
    pool = read_json(out / "data" / "pool.json")
    by_id = {it["id"]: it for it in pool}
    scores = [s["score"] for s in read_json(out / "select" / "lim.scores.json")]
    chosen = {run: [c["id"] for c in read_json(out / "select" / f"{m}.json")] for run, m in METHOD_FILES.items()}
    mixes = {"full": level_mix(pool), **{run: level_mix([by_id[i] for i in ids]) for run, ids in chosen.items()}}
    quartiles = np.percentile(scores, [10, 25, 50, 75, 90]).round(3).tolist()
    return {"stage1_epoch_accuracy": stage1_epochs, "lim_scores": len(scores), "lim_score_deciles": quartiles,
            "lim_kept_at_theta": sum(s >= THETA for s in scores), "lim_score_never_solved": never_solved(out),
            "passrate": passrate_facts(out, chosen["passrate"], chosen["limr"]), "levels": mixes}  # fmt: skip


def passrate_facts(out: Path, passrate: list[str], limr: list[str]) -> dict:
    """The warm-up's pass rates on the pool (what PASSRATE chose from) and how many of its prompts LIMR chose too."""
    selection = read_json(out / "select" / "passrate.report.json")
    shared = len(set(passrate) & set(limr))
    return {"samples_per_prompt": selection["samples_per_prompt"], "never_solved": selection["never_solved"],
            "always_solved": selection["always_solved"], "prompts": selection["scored"], "selected": len(passrate),
            "shared_with_limr": shared, "jaccard_with_limr": round(shared / len(set(passrate) | set(limr)), 3)}  # fmt: skip


def never_solved(out: Path) -> float:
    """LIM's score of a prompt never solved, 1 - Σ r_avg² / Σ (1 - r_avg)², from the average curve: with a low
    curve the denominator is large and even such a prompt passes θ; with the paper's (rising towards ~0.8) it fails."""
    mean = np.array(read_json(out / "select" / "lim.report.json")["mean_curve"])
    return round(float(1 - (mean**2).sum() / ((1 - mean) ** 2).sum()), 3)


def fmt(ci: Interval, sign: bool = False) -> str:
    p = "+" if sign else ""
    return f"{ci.estimate:{p}.1f} [{ci.low:{p}.1f}, {ci.high:{p}.1f}]"


def study(seed_dirs: dict[int, Path], runs: list[str], benches: list[str], primary: str) -> dict:
    """Means with intervals and paired differences over the seeds' output folders, per benchmark (protocol)."""
    scores = {(run, b): [score_matrix(final_folder(d / "eval", run) / f"{b}.jsonl") for d in seed_dirs.values()]
              for run in runs for b in benches}  # fmt: skip
    means = {run: {b: mean_ci(scores[run, b]).scaled(100) for b in benches} for run in runs}
    per_seed = {run: {b: [round(100 * m.mean(), 1) for m in scores[run, b]] for b in benches} for run in runs}
    diffs, per_seed_diffs = {}, {}
    for a, b in DIFFS:
        if a in runs and b in runs:
            pairs = {bench: list(zip(scores[a, bench], scores[b, bench], strict=True)) for bench in benches}
            diffs[f"{a}-{b}"] = {
                bench: paired_diff_ci(scores[a, bench], scores[b, bench]).scaled(100) for bench in benches
            }
            per_seed_diffs[f"{a}-{b}"] = {
                bench: [round(100 * (x.mean() - y.mean()), 1) for x, y in pairs[bench]] for bench in benches
            }
    return {"seeds": list(seed_dirs), "benches": benches, "primary": primary, "means": means, "per_seed": per_seed,
            "diffs": diffs, "per_seed_diffs": per_seed_diffs}  # fmt: skip


def as_json(result: dict) -> dict:
    """Intervals as [estimate, low, high] lists, rounded."""

    def plain(v):
        if isinstance(v, Interval):
            return [round(v.estimate, 2), round(v.low, 2), round(v.high, 2)]
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v

    return plain(result)


def markdown(result: dict, facts: dict[int, dict], questions: dict[str, int], titles: dict[str, str]) -> str:
    benches, primary, seeds = result["benches"], result["primary"], result["seeds"]
    lines = [f"Seeds {', '.join(map(str, seeds))}; held-out accuracy %, mean over seeds [95% interval: bootstrap "
             "over questions and samples, seeds as strata]; per-seed values in parentheses after it. Primary metric: "
             f"{titles[primary]}.", "",
             "| run | #prompts | " + " | ".join(titles[b] for b in benches) + " |",
             "|---|---:|" + "---:|" * len(benches)]  # fmt: skip
    for run, by_bench in result["means"].items():
        cells = [f"{fmt(by_bench[b])} ({', '.join(map(str, result['per_seed'][run][b]))})" for b in benches]
        lines.append(f"| {run} | {questions.get(run, '-')} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences, points (same questions; * = interval excludes 0). The bootstrap columns hold "
              "evaluation noise only; the t-interval over seeds holds the spread between trainings too: a difference "
              "is beyond noise only where it excludes 0 as well.", "",
              "| difference | " + " | ".join(titles[b] for b in benches)
              + f" | over seeds, t ({titles[primary]}) | per seed ({titles[primary]}) |",
              "|---|" + "---:|" * (len(benches) + 2)]  # fmt: skip
    for name, by_bench in result["diffs"].items():
        a, b = name.split("-")
        per = result["per_seed_diffs"][name][primary]
        cells = [fmt(by_bench[k], sign=True) + (" *" if excludes_zero(by_bench[k]) else "") for k in benches]
        if len(per) >= 2:
            over = seeds_ci(per)
            cells.append(fmt(over, sign=True) + (" *" if excludes_zero(over) else ""))
        else:
            cells.append("- (one seed)")
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + f" | {', '.join(f'{x:+.1f}' for x in per)} |")
    curves = [f["stage1_epoch_accuracy"] for f in facts.values()]
    mean_curve = np.mean([c[: min(map(len, curves))] for c in curves], axis=0)
    lines += ["", "Stage 1's training accuracy by epoch (samples at the training temperature), mean over seeds: "
              + " → ".join(f"{a:.2f}" for a in mean_curve) + ".", ""]  # fmt: skip
    lines += [
        f"LIM at θ {THETA} would keep "
        + ", ".join(f"{f['lim_kept_at_theta']} of {f['lim_scores']} (seed {s})" for s, f in facts.items())  # fmt: skip
        + "; score deciles (10/25/50/75/90%) "
        + "; ".join(f"seed {s}: {f['lim_score_deciles']}" for s, f in facts.items())
        + ". A prompt never solved would score "
        + ", ".join(str(f["lim_score_never_solved"]) for f in facts.values())
        + " (1 - Σ r_avg² / Σ (1 - r_avg)², from the average curve); one always solved, 0.",
        "",
    ]
    lines += [passrate_line(facts), ""]
    lines += ["Difficulty mix (prompts per level, seed " + str(seeds[0]) + "):", "",
              "| run | " + " | ".join(facts[seeds[0]]["levels"]["full"]) + " |",
              "|---|" + "---:|" * len(facts[seeds[0]]["levels"]["full"])]  # fmt: skip
    for run, mix in facts[seeds[0]]["levels"].items():
        lines.append(f"| {run} | " + " | ".join(str(mix.get(k, 0)) for k in facts[seeds[0]]["levels"]["full"]) + " |")
    return "\n".join(lines) + "\n"


def passrate_line(facts: dict[int, dict]) -> str:
    """What PASSRATE chose from (the warm-up's pass rates on the pool) and its overlap with LIMR, per seed."""
    per = [(s, f["passrate"]) for s, f in facts.items()]
    n = per[0][1]["samples_per_prompt"]
    return (f"PASSRATE: the warm-up's pass rate p on the pool's prompts ({n} samples each at the training temperature) "
            "never solved / always solved / 0 < p < 1: "
            + "; ".join(f"{p['never_solved']} / {p['always_solved']} / "
                        f"{p['prompts'] - p['never_solved'] - p['always_solved']} of {p['prompts']} (seed {s})"
                        for s, p in per)
            + ". Prompts LIMR chose too: "
            + "; ".join(f"{p['shared_with_limr']} of {p['selected']}, Jaccard {p['jaccard_with_limr']:.2f} (seed {s})"
                        for s, p in per)
            + ".")  # fmt: skip


def beside(result: dict, committed: dict, titles: dict[str, str]) -> str:
    """This seed's numbers next to the committed study's (mean [interval], per-seed min..max): does this machine agree?"""
    lines = [f"Beside the study in mini/study.json (seeds {', '.join(map(str, committed['seeds']))}): "
             "this run | study mean [95% interval] | study's seeds min..max", ""]  # fmt: skip
    for run, by_bench in result["means"].items():
        for b, ci in by_bench.items():
            if run in committed["means"] and b in committed["means"][run]:
                est, low, high = committed["means"][run][b]
                seeds = committed["per_seed"][run][b]
                lines.append(f"  {run:8} {titles[b]:20} {ci.estimate:5.1f} | {est:5.1f} [{low:.1f}, {high:.1f}] | "
                             f"{min(seeds):.1f}..{max(seeds):.1f}")  # fmt: skip
    primary = result["primary"]
    for name, by_bench in result["diffs"].items():
        if name in committed.get("per_seed_diffs", {}):
            est, low, high = committed["diffs"][name][primary]
            seeds = committed["per_seed_diffs"][name][primary]
            lines.append(f"  {name:15} {titles[primary]:20} {by_bench[primary].estimate:+5.1f} | {est:+5.1f} "
                         f"[{low:+.1f}, {high:+.1f}] | {min(seeds):+.1f}..{max(seeds):+.1f}")  # fmt: skip
    return "\n".join(lines)


def plot(facts: dict, scores: dict[int, list[float]], path: Path) -> None:
    """Stage 1's training accuracy by epoch (each seed, and their mean) and LIM's score distribution with θ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    curves = [f["stage1_epoch_accuracy"] for f in facts.values()]
    for seed, curve in zip(facts, curves, strict=True):
        left.plot(range(1, len(curve) + 1), curve, color="0.7", lw=1, label=f"seed {seed}")
    n = min(map(len, curves))
    left.plot(range(1, n + 1), np.mean([c[:n] for c in curves], axis=0), color="C0", lw=2.5, label="mean")
    left.set(xlabel="stage-1 epoch", ylabel="training accuracy (T 1.0)", title="stage 1: average learning curve")
    left.legend(fontsize=8)
    pooled = [s for v in scores.values() for s in v]
    right.hist(np.clip(pooled, -2, 1), bins=30, color="C1")
    right.axvline(THETA, color="k", ls="--", label=f"θ {THETA}: keeps {np.mean(np.array(pooled) >= THETA):.0%}")
    right.set(xlabel="LIM score (clipped at -2)", ylabel="prompts (all seeds)", title="LIM scores of the pool")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
