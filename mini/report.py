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
from limr.stats import (
    Interval,
    excludes_zero,
    mean_ci,
    paired_diff_ci,
    read_question_scores,
    seed_prediction,
    seeds_ci,
)

RUN_ORDER = ("warmup", "full", "limr", "rand", "linear", "passrate")
# (run, against): RL itself, then the paper's comparisons of each subset with the whole pool and with chance, then
# LIM against the cheap proxy that needs no stage 1 (issue 15)
DIFFS = (("full", "warmup"), ("limr", "full"), ("rand", "full"), ("linear", "full"), ("passrate", "full"),
         ("limr", "rand"), ("linear", "rand"), ("passrate", "rand"), ("limr", "passrate"))  # fmt: skip
METHOD_FILES = {"limr": "lim", "rand": "rand", "linear": "linear", "passrate": "passrate"}
GREEDY = "mini"  # the held-out set's greedy protocol (mini/run.py: TEST)
BEST = "mini_best"  # the held-out set at the warm-up's best temperature on validation (mini/run.py: BEST)


def score_matrix(path: Path) -> np.ndarray:
    """An eval/evaluate.py responses file as a (questions x samples) 0/1 array, questions sorted by id."""
    return np.array(list(read_question_scores(path).values()))


def final_folder(eval_dir: Path, run: str) -> Path:
    """The warm-up's base folder, or a run's last evaluated step."""
    if run == "warmup":
        return eval_dir / "warmup" / "base"
    steps = [int(p.name[4:]) for p in (eval_dir / run).glob("step*") if (p / "results.json").is_file()]
    return eval_dir / run / f"step{max(steps)}"


def pass_at(matrix: np.ndarray) -> float:
    """pass@n of a (questions x n samples) 0/1 array: the share of questions with at least one right sample."""
    return float((matrix > 0).any(axis=1).mean())


def level_accuracy(path: Path, levels: dict[str, int]) -> dict[str, float]:
    """Accuracy % per difficulty level of one responses file (levels: question id -> level, data/levels.json)."""
    by_level: dict[int, list[float]] = {}
    for pid, scores in read_question_scores(path).items():
        by_level.setdefault(levels[pid], []).extend(scores)
    return {f"level{k}": round(100 * float(np.mean(v)), 2) for k, v in sorted(by_level.items())}


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


def spread(per_seed: list[float], matrices: list[np.ndarray] | None = None) -> Interval:
    """A mean over seeds with its interval: the t-interval over the per-seed values (the spread between trainings,
    evaluation noise within it); with one seed there is no spread to measure, and the interval is the bootstrap over
    questions and samples of its matrix (evaluation noise only)."""
    if len(per_seed) >= 2:
        return seeds_ci(per_seed)
    return mean_ci(matrices).scaled(100)


def study(seed_dirs: dict[int, Path], runs: list[str], benches: list[str], primary: str,
          rands: tuple[str, ...] = ("rand",)) -> dict:  # fmt: skip
    """Means with intervals and paired differences over the seeds' output folders, per benchmark (protocol).

    RAND's value in a seed is the mean over its draws (`rands`: each a stage-2 run), so a seed's RAND is not one
    lucky or unlucky subset. Intervals are over seeds (`spread`); `eval_noise` keeps the bootstrap's for reference."""
    dirs = list(seed_dirs.values())

    def matrices(run: str, bench: str, folder: Path) -> list[np.ndarray]:
        names = rands if run == "rand" else (run,)
        return [score_matrix(final_folder(folder / "eval", name) / f"{bench}.jsonl") for name in names]

    draws = {(run, b): [matrices(run, b, d) for d in dirs] for run in runs for b in benches}
    mean_of = {key: [np.mean(m, axis=0) for m in per_seed] for key, per_seed in draws.items()}  # draws averaged
    per_seed = {run: {b: [round(100 * float(m.mean()), 2) for m in mean_of[run, b]] for b in benches} for run in runs}
    means = {run: {b: spread(per_seed[run][b], mean_of[run, b]) for b in benches} for run in runs}
    sampled = [b for b in benches if draws[runs[0], b][0][0].shape[1] > 1]
    pass_n = {run: {b: [round(100 * float(np.mean([pass_at(m) for m in ms])), 2) for ms in draws[run, b]]
                    for b in sampled} for run in runs}  # fmt: skip
    pairs = [(a, b) for a, b in DIFFS if a in runs and b in runs]
    per_seed_diffs = paired(per_seed, pairs, benches)
    diffs, eval_noise = {}, {}
    for a, b in pairs:
        name = f"{a}-{b}"
        eval_noise[name] = {k: paired_diff_ci(mean_of[a, k], mean_of[b, k]).scaled(100) for k in benches}
        diffs[name] = {k: seeds_ci(per_seed_diffs[name][k]) if len(dirs) >= 2 else eval_noise[name][k]
                       for k in benches}  # fmt: skip
    result = {"seeds": list(seed_dirs), "benches": benches, "primary": primary, "rand_draws": len(rands),
              "means": means, "per_seed": per_seed, "pass_at_n": pass_n, "diffs": diffs,
              "per_seed_diffs": per_seed_diffs, "eval_noise": eval_noise}  # fmt: skip
    if len(rands) > 1 and "rand" in runs:  # what a one-draw run (make demo) is compared with: RAND's first draw alone
        first = {b: [round(100 * float(ms[0].mean()), 2) for ms in draws["rand", b]] for b in benches}
        with_rand = [(a, b) for a, b in pairs if "rand" in (a, b)]
        result["one_draw"] = {"per_seed": {"rand": first},
                              "per_seed_diffs": paired({**per_seed, "rand": first}, with_rand, benches)}  # fmt: skip
    if "warmup" in runs and all((final_folder(d / "eval_best", "warmup") / f"{BEST}.jsonl").is_file() for d in dirs):
        result["best"] = best_baseline(dirs, runs, per_seed)
    result["levels"] = {run: levels_over_seeds(dirs, run) for run in runs if run != "rand"}
    return result


def paired(per_seed: dict, pairs: list[tuple[str, str]], benches: list[str]) -> dict:
    """Each seed's difference a - b, per benchmark: what the intervals over seeds are taken of."""
    return {f"{a}-{b}": {k: [round(x - y, 2) for x, y in zip(per_seed[a][k], per_seed[b][k], strict=True)]
                         for k in benches} for a, b in pairs}  # fmt: skip


def best_baseline(dirs: list[Path], runs: list[str], per_seed: dict) -> dict:
    """The warm-up at its best temperature on validation, on the held-out set, per seed; and what each trained run's
    greedy accuracy gains over it: does RL teach more than a lower temperature would?"""
    chosen = [read_json(d / "data" / "best.json")[BEST]["temperature"] for d in dirs]
    accuracy = [round(100 * float(score_matrix(final_folder(d / "eval_best", "warmup") / f"{BEST}.jsonl").mean()), 2)
                for d in dirs]  # fmt: skip
    gains = {run: [round(g - w, 2) for g, w in zip(per_seed[run][GREEDY], accuracy, strict=True)]
             for run in runs if run != "warmup"}  # fmt: skip
    over = {run: seeds_ci(v) for run, v in gains.items()} if len(dirs) >= 2 else {}
    return {"temperature": chosen, "accuracy": accuracy, "greedy_gain": gains, "greedy_gain_over_seeds": over}


def levels_over_seeds(dirs: list[Path], run: str) -> dict[str, list[float]]:
    """Greedy accuracy % per difficulty level, per seed."""
    per = [level_accuracy(final_folder(d / "eval", run) / f"{GREEDY}.jsonl", read_json(d / "data" / "levels.json"))
           for d in dirs]  # fmt: skip
    return {level: [p[level] for p in per] for level in per[0]}


def as_json(result: dict) -> dict:
    """Intervals as [estimate, low, high] lists, rounded."""

    def plain(v):
        if isinstance(v, Interval):
            return [round(v.estimate, 2), round(v.low, 2), round(v.high, 2)]
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v

    return plain(result)


def per(values: list[float], sign: bool = False) -> str:
    return ", ".join(f"{x:+.1f}" if sign else f"{x:.1f}" for x in values)


def markdown(result: dict, facts: dict[int, dict], questions: dict[str, int], titles: dict[str, str]) -> str:
    benches, primary, seeds = result["benches"], result["primary"], result["seeds"]
    many = len(seeds) >= 2
    how = ("95% t-interval over seeds: the spread between trainings, evaluation noise within it" if many else
           "95% bootstrap interval over questions and samples: evaluation noise only, one seed has no spread between "
           "trainings to measure")  # fmt: skip
    draws = f"; RAND is the mean of {result['rand_draws']} draws a seed" if result["rand_draws"] > 1 else ""
    lines = [f"Seeds {', '.join(map(str, seeds))}; held-out accuracy %, mean over seeds [{how}]; per-seed values in "
             f"parentheses{draws}. Primary metric: {titles[primary]}.", "",
             "| run | #prompts | " + " | ".join(titles[b] for b in benches) + " |",
             "|---|---:|" + "---:|" * len(benches)]  # fmt: skip
    for run, by_bench in result["means"].items():
        cells = [f"{fmt(by_bench[b])} ({per(result['per_seed'][run][b])})" for b in benches]
        lines.append(f"| {run} | {questions.get(run, '-')} | " + " | ".join(cells) + " |")
    sampled = list(next(iter(result["pass_at_n"].values())))
    if sampled:
        lines += ["", "pass@n (a question counts if any of its n samples is right), mean over seeds (per seed):", "",
                  "| run | " + " | ".join(f"pass@{titles[b]}" for b in sampled) + " |",
                  "|---|" + "---:|" * len(sampled)]  # fmt: skip
        for run, by_bench in result["pass_at_n"].items():
            cells = [f"{np.mean(by_bench[b]):.1f} ({per(by_bench[b])})" for b in sampled]
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
    if "best" in result:
        best = result["best"]
        lines += ["", "The warm-up at its best temperature (chosen per seed on the validation set, 4 samples there; "
                  f"T {per(best['temperature'])}) scores {per(best['accuracy'])} on the held-out set "
                  f"(mean {np.mean(best['accuracy']):.1f}). Greedy accuracy minus that baseline, points: what RL "
                  "teaches beyond a lower temperature.", "",
                  "| run | mean [95% t over seeds] | per seed |", "|---|---:|---:|"]  # fmt: skip
        for run, gains in best["greedy_gain"].items():
            over = best["greedy_gain_over_seeds"].get(run)
            cell = fmt(over, sign=True) + (" *" if excludes_zero(over) else "") if over else f"{gains[0]:+.1f}"
            lines.append(f"| {run} | {cell} | {per(gains, sign=True)} |")
    eval_title = "bootstrap: evaluation noise only"
    lines += ["", f"Paired differences, points (same questions; * = the interval excludes 0: beyond noise). Intervals: "
              f"{how}; the last column, for reference, is the bootstrap over questions and samples.", "",
              "| difference | " + " | ".join(titles[b] for b in benches)
              + f" | per seed ({titles[primary]}) | {eval_title} ({titles[primary]}) |",
              "|---|" + "---:|" * (len(benches) + 2)]  # fmt: skip
    for name, by_bench in result["diffs"].items():
        a, b = name.split("-")
        cells = [fmt(by_bench[k], sign=True) + (" *" if excludes_zero(by_bench[k]) else "") for k in benches]
        cells += [
            per(result["per_seed_diffs"][name][primary], sign=True),
            fmt(result["eval_noise"][name][primary], sign=True),
        ]
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    levels = result["levels"]
    names = list(next(iter(levels.values())))
    lines += ["", "Greedy accuracy % by difficulty level, mean over seeds:", "",
              "| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]  # fmt: skip
    for run, by_level in levels.items():
        lines.append(f"| {run} | " + " | ".join(f"{np.mean(by_level[k]):.1f}" for k in names) + " |")
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
    """This seed's numbers next to the committed study's: its mean, and the range one more seed falls in 95% of the
    time (limr.stats.seed_prediction over the study's per-seed values). Another machine or seed lands in that range,
    not on the mean."""
    lines = [f"Beside the study in mini/study.json (seeds {', '.join(map(str, committed['seeds']))}): "
             "this run | study mean | where one more seed falls (95% prediction) | inside?", ""]  # fmt: skip
    outside = 0
    # a run with one RAND draw is compared with the study's first draws (the same subsets for the same seeds), not
    # with its mean of draws, whose spread is narrower than one draw's
    one = committed.get("one_draw", {}) if result.get("rand_draws", 1) == 1 else {}

    def values(kind: str, name: str, bench: str):
        return one.get(kind, {}).get(name, {}).get(bench) or committed.get(kind, {}).get(name, {}).get(bench)

    def row(label: str, value: float, seeds: list[float], sign: bool) -> None:
        nonlocal outside
        p = "+" if sign else ""
        rng = seed_prediction(seeds)
        inside = rng.low <= value <= rng.high
        outside += not inside
        lines.append(f"  {label:38} {value:{p}6.1f} | {rng.estimate:{p}6.1f} | [{rng.low:{p}.1f}, {rng.high:{p}.1f}] | "
                     + ("yes" if inside else "NO"))  # fmt: skip

    for run, by_bench in result["means"].items():
        for b, ci in by_bench.items():
            seeds = values("per_seed", run, b)
            if seeds and len(seeds) >= 2:
                row(f"{run} {titles[b]}", ci.estimate, seeds, sign=False)
    primary = result["primary"]
    for name, by_bench in result["diffs"].items():
        seeds = values("per_seed_diffs", name, primary)
        if seeds and len(seeds) >= 2:
            row(f"{name} {titles[primary]}", by_bench[primary].estimate, seeds, sign=True)
    lines += ["", f"{len(lines) - 2 - outside} of {len(lines) - 2} inside the study's ranges"
              + (" (about 1 in 20 falls outside by chance)" if outside else "") + "."]  # fmt: skip
    if one:
        lines.append("RAND here is one draw: its rows are compared with the study's first draw of each seed.")
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


def readme_tables(study: dict) -> str:
    """The README's study tables, rendered from mini/study.json (a test holds the README to this text): each run's
    mean with its 95% t-interval over seeds, pass@4, the paired differences and the best-temperature baseline."""
    benches, primary = study["benches"], study["primary"]
    names = {"mini": "greedy", "mini_t04": "4 samples at T 0.4", "mini_t10": "4 samples at T 1.0"}
    sampled = list(next(iter(study["pass_at_n"].values())))

    def cell(triple, sign=False):
        p = "+" if sign else ""
        est, low, high = triple
        star = sign and (low > 0 or high < 0)
        text = f"{est:{p}.1f} [{low:{p}.1f}, {high:{p}.1f}]"
        return f"**{text}**" if star else text

    head = [names.get(b, b) + (" (primary)" if b == primary else "") for b in benches]
    lines = ["| run | #prompts | " + " | ".join(head) + " | " + " | ".join(f"pass@4, {names[b].split(' at ')[1]}" for b in sampled)
             + " |", "|---|---:|" + "---:|" * (len(benches) + len(sampled))]  # fmt: skip
    for run, by_bench in study["means"].items():
        passes = [cell(as_json({"x": seeds_ci(study["pass_at_n"][run][b])})["x"]) for b in sampled]
        lines.append(f"| {run} | {study['questions'].get(run, '-')} | "
                     + " | ".join(cell(by_bench[b]) for b in benches) + " | " + " | ".join(passes) + " |")  # fmt: skip
    lines += ["", f"| difference | {names[benches[0]]} | {names[primary]} (primary) | per seed ({names[primary]}) |",
              "|---|---:|---:|---:|"]  # fmt: skip
    for name, by_bench in study["diffs"].items():
        per_seed = ", ".join(f"{x:+.1f}" for x in study["per_seed_diffs"][name][primary])
        lines.append(f"| {name.replace('-', ' - ')} | {cell(by_bench[benches[0]], True)} | "
                     f"{cell(by_bench[primary], True)} | {per_seed} |")  # fmt: skip
    best = study["best"]
    lines += ["", "| run | greedy − warm-up at its best temperature | per seed |", "|---|---:|---:|"]
    for run, gains in best["greedy_gain"].items():
        lines.append(f"| {run} | {cell(best['greedy_gain_over_seeds'][run], True)} | "
                     + ", ".join(f"{x:+.1f}" for x in gains) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_differences(result: dict, titles: dict[str, str], path: Path) -> None:
    """Each paired difference on the primary metric, and each run's greedy gain over the warm-up at its best
    temperature: the per-seed values as dots, the mean and its 95% interval over seeds as a bar. A bar that crosses
    zero is a difference the seeds do not support."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = result["primary"]
    rows = [(name.replace("-", " - "), result["per_seed_diffs"][name][primary], result["diffs"][name][primary])
            for name in result["diffs"]]  # fmt: skip
    if "best" in result:
        rows += [(f"{run} greedy - warm-up at best T", gains, result["best"]["greedy_gain_over_seeds"].get(run))
                 for run, gains in result["best"]["greedy_gain"].items()]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    for y, (_, values, ci) in enumerate(rows):
        ax.scatter(values, [y] * len(values), color="0.55", s=14, zorder=3)
        if isinstance(ci, Interval) and len(values) >= 2:
            color = "C3" if excludes_zero(ci) else "C0"
            ax.plot([ci.low, ci.high], [y, y], color=color, lw=3, alpha=0.6)
            ax.scatter([ci.estimate], [y], color=color, marker="|", s=200, zorder=4)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"points (differences: {titles[primary]}); dots: seeds; bar: 95% t-interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
