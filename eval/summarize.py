"""The paper's Table 2 and accuracy-vs-step curves from evaluation results, for any number of runs.

    python eval/summarize.py                           # every run in outputs/eval -> summary.md, summary.csv, curves.png
    python eval/summarize.py --runs qwen2.5-math-7b,math8k,rand,linear,limr --paper \
        --questions math8k=8523,rand=1389,linear=1138,limr=1389

Reads <eval_dir>/<run>/{base,step<N>}/results.json as eval/evaluate.py writes them. The table has one row per run
in the paper's layout: run, the step shown, #questions (the run's training prompts, given with --questions),
AIME24, MATH500, AMC23 and their average, each the accuracy in % (mean over samples). Benchmarks of another
settings table (evaluate.py --settings, as mini/ uses) get columns of their own after these, and the average is
then their mean when there are several. A run's row is its last step; `--step best` takes the step with the best
average instead, which selects on the test sets themselves, so say so wherever you report it. A benchmark evaluated
on fewer questions than the full set (a smoke test) is marked †. `--paper` adds the paper's rows. curves.png plots
accuracy against training step for each benchmark and on average (the paper's Fig. 3a / 4): a run's base folder, if
any, is its step 0; a run that has only a base folder (the base model) is a dashed line. Bad input, an output
that would replace a results file or cannot be written, or a failed write prints one `error:` line, exits 2 and
writes nothing (the three files are written all or nothing).

Uncertainty: where a step's <bench>.jsonl (every response and its verdict) sits beside its results.json, each
accuracy gets a 95% interval, a bootstrap over questions and, where n > 1, over each question's samples
(limr/stats.py's mean_ci): `25.0 [10.0, 41.7]` in the table, <bench>_low / <bench>_high in the CSV, a band in the
curves. `--compare A,B` adds the paired difference A - B on each benchmark both rows evaluated, with its interval
(paired_diff_ci: the same questions redrawn for both runs), to the table and the printout. The average has no
interval (its benchmarks are of different sizes; compare them one by one).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from limr.cli import refuse_overwriting_inputs, refuse_unwritable_outputs
from limr.folders import step_folders
from limr.jsonio import DataError, all_or_nothing, atomic_write, is_number, read_json
from limr.paper import BENCHMARK_SIZES
from limr.stats import Interval, excludes_zero, mean_ci, paired_diff_ci, read_question_scores

BENCHES = ("aime24", "math500", "amc23")  # Table 2's column order
TITLES = {"aime24": "AIME24", "math500": "MATH500", "amc23": "AMC23", "average": "average"}
# Table 2 of the paper (arXiv 2502.11886): run, training prompts, AIME24, MATH500, AMC23 (accuracy, %). The paper
# gives LINEAR 1,138 prompts in the table and 1,189 in the text.
PAPER = (
    ("Qwen2.5-Math-7B", None, 16.7, 52.4, 52.5),
    ("FULL", 8523, 32.5, 76.6, 61.9),
    ("RAND", 1389, 25.8, 66.0, 56.3),
    ("LINEAR", 1138, 28.3, 74.6, 61.9),
    ("LIMR", 1389, 32.5, 78.0, 63.8),
)

# A run: {step: {bench: (accuracy in %, questions evaluated)}}, step 0 standing for a base folder.


def read_point(path: Path) -> dict[str, tuple[float, int]]:
    results = read_json(path)
    benchmarks = results.get("benchmarks") if isinstance(results, dict) else None
    if not isinstance(benchmarks, dict):
        raise DataError(f"{path}: not a results file (no 'benchmarks' object)")
    point = {}
    for bench, entry in benchmarks.items():
        acc = entry.get("accuracy") if isinstance(entry, dict) else None
        questions = entry.get("questions") if isinstance(entry, dict) else None
        if not is_number(acc) or not 0 <= acc <= 1:
            raise DataError(f"{path}: {bench}: 'accuracy' must be a number in [0, 1], got {acc!r:.40}")
        if isinstance(questions, bool) or not isinstance(questions, int) or questions < 1:
            raise DataError(f"{path}: {bench}: 'questions' must be a positive integer, got {questions!r:.40}")
        point[bench] = (100 * acc, questions)
    return point


def read_run(folder: Path) -> tuple[dict[int, dict], bool]:
    """A run's points by step (its base folder as step 0), and whether it is a base model alone (no steps)."""
    steps = step_folders(folder, "step", need="results.json")  # step3 and step03 (or step٣) are refused
    points = {step: read_point(sub / "results.json") for step, sub in steps.items()}
    base = folder / "base" / "results.json"
    if base.is_file() and 0 not in points:
        points[0] = read_point(base)
    return dict(sorted(points.items())), base.is_file() and not steps


def point_folder(eval_dir: Path, run: str, step: int) -> Path:
    """The folder a point was read from: step 0 stands for the base folder unless a step0 folder exists."""
    folder = step_folders(eval_dir / run, "step", need="results.json").get(step)
    return folder if folder is not None else eval_dir / run / "base"


def load_scores(eval_dir: Path, runs: dict) -> dict[tuple[str, int, str], dict[str, list[float]]]:
    """Per (run, step, benchmark) with a responses file beside its results.json: the per-question scores."""
    found = {}
    for run, (points, _) in runs.items():
        for step, point in points.items():
            for bench in point:
                path = point_folder(eval_dir, run, step) / f"{bench}.jsonl"
                if path.is_file():
                    found[run, step, bench] = read_question_scores(path)
    return found


def intervals(scores: dict) -> dict[tuple[str, int, str], Interval]:
    """Each accuracy's 95% bootstrap interval, in %."""
    keys = tqdm(scores, desc="bootstrap intervals", unit="accuracy", disable=None if len(scores) > 20 else True)
    return {key: mean_ci([list(scores[key].values())]).scaled(100) for key in keys}


def compare(rows: list[dict], scores: dict, pair: tuple[str, str], cols: Sequence[str]) -> list[dict]:
    """The paired difference A - B (in points) on each benchmark both runs' rows have responses for."""
    by_run = {row["run"]: row for row in rows}
    missing = [r for r in pair if r not in by_run]
    if missing:
        raise DataError(f"--compare: no row for run {', '.join(missing)} (rows: {', '.join(by_run)})")
    out = []
    for bench in cols:
        a, b = (scores.get((r, by_run[r]["_step"], bench)) for r in pair)
        if a is None or b is None:
            continue
        if a.keys() != b.keys():
            raise DataError(f"--compare: {bench}: the two runs were evaluated on different questions")
        diff = paired_diff_ci([list(a.values())], [list(b.values())]).scaled(100)
        out.append({"benchmark": bench, "difference": diff})
    if not out:
        raise DataError(f"--compare {','.join(pair)}: no benchmark with responses (<bench>.jsonl) for both rows")
    return out


def compare_markdown(pair: tuple[str, str], diffs: list[dict]) -> str:
    lines = [f"\n{pair[0]} - {pair[1]}, paired over the same questions (points, 95% interval):\n",
             "| benchmark | difference | 95% interval | beyond noise |", "|---|---:|---:|---|"]  # fmt: skip
    for d in diffs:
        i = d["difference"]
        beyond = "yes" if excludes_zero(i) else "no"
        lines.append(f"| {TITLES.get(d['benchmark'], d['benchmark'])} | {i.estimate:+.1f} | "
                     f"[{i.low:+.1f}, {i.high:+.1f}] | {beyond} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def load_runs(eval_dir: Path, names: list[str] | None) -> dict[str, tuple[dict, bool]]:
    if not eval_dir.is_dir():
        raise DataError(f"{eval_dir}: no such folder: run bash eval/eval.sh first")
    found = {}
    for folder in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
        points, only_base = read_run(folder)
        if points:
            found[folder.name] = (points, only_base)
    if not found:
        raise DataError(f"{eval_dir}: no results (<run>/base/results.json or <run>/step<N>/results.json)")
    if names is None:  # base models first, as in the paper
        return dict(sorted(found.items(), key=lambda kv: (not kv[1][1], kv[0])))
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"{eval_dir}: no results for run {', '.join(missing)} (found: {', '.join(found)})")
    return {n: found[n] for n in names}


def columns(runs: dict, paper: bool = False) -> list[str]:
    """The table's benchmarks: the paper's three when any was evaluated (or its rows are shown), then any others."""
    found = {b for points, _ in runs.values() for point in points.values() for b in point}
    return (list(BENCHES) if paper or found & set(BENCHES) else []) + sorted(found - set(BENCHES))


def averaged(cols: list[str]) -> list[str]:
    """What the average is over: the paper's AVG is the mean of its three benchmarks; other sets, all of theirs.
    Nothing for a single benchmark."""
    keys = list(BENCHES) if set(BENCHES) <= set(cols) else list(cols)
    return keys if len(keys) > 1 else []


def average(point: dict, keys: Sequence[str]) -> float | None:
    """The mean over `keys`, only when all of them were evaluated."""
    if not keys or not all(b in point for b in keys):
        return None
    return sum(point[b][0] for b in keys) / len(keys)


def headline(point: dict, cols: Sequence[str]) -> float | None:
    """What --step best maximises: the average, or the one benchmark's accuracy."""
    return average(point, averaged(cols)) if averaged(cols) else point.get(cols[0], (None,))[0]


def table_rows(runs: dict, rule: str, questions: dict[str, int], cols: Sequence[str] = BENCHES) -> list[dict]:
    rows = []
    for run, (points, only_base) in runs.items():
        steps = list(points) if only_base else [s for s in points if s > 0] or list(points)
        best = max(steps, key=lambda s: (headline(points[s], cols) is not None, headline(points[s], cols) or 0, s))
        step = best if rule == "best" else steps[-1]
        point = points[step]
        row = {"run": run, "source": "ours", "step": "base" if only_base or step == 0 else step, "_step": step}
        row["questions"] = questions.get(run)
        for b in cols:
            row[b], row[f"{b}_questions"] = point.get(b, (None, None))
        row["average"] = average(point, averaged(cols))
        rows.append(row)
    return rows


def paper_rows() -> list[dict]:
    rows = []
    for run, n, *accs in PAPER:
        row = {"run": f"{run} (paper)", "source": "paper", "step": "", "questions": n}
        for b, acc in zip(BENCHES, accs, strict=True):
            row[b], row[f"{b}_questions"] = acc, BENCHMARK_SIZES[b]
        row["average"] = sum(accs) / len(accs)
        rows.append(row)
    return rows


def markdown(rows: list[dict], cols: Sequence[str] = BENCHES) -> str:
    titles = [TITLES.get(b, b) for b in cols] + (["average"] if averaged(cols) else [])
    lines = [
        "| " + " | ".join(["run", "step", "#questions", *titles]) + " |",
        "|---|---|" + "---:|" * (len(titles) + 1),
    ]
    partial, spread = False, False
    for row in rows:
        cells = [row["run"], str(row["step"]), "-" if row["questions"] is None else f"{row['questions']:,}"]
        for b in cols:
            value = row.get(b)
            short = value is not None and b in BENCHMARK_SIZES and row[f"{b}_questions"] < BENCHMARK_SIZES[b]
            partial |= short
            cell = "-" if value is None else f"{value:.1f}" + ("†" if short else "")
            if row.get(f"{b}_low") is not None:
                cell += f" [{row[f'{b}_low']:.1f}, {row[f'{b}_high']:.1f}]"
                spread = True
            cells.append(cell)
        if averaged(cols):
            cells.append("-" if row["average"] is None else f"{row['average']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if partial:
        sizes = ", ".join(f"{TITLES[b]} {n}" for b, n in BENCHMARK_SIZES.items())
        lines.append(f"\n† evaluated on fewer questions than the full benchmark ({sizes}).")
    if spread:
        lines.append("\n[low, high]: 95% bootstrap interval over questions and samples.")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], cols: Sequence[str] = BENCHES) -> str:
    fields = ["run", "source", "step", "questions", *cols, "average", *(f"{b}_questions" for b in cols)]
    fields += [f"{b}_{end}" for b in cols for end in ("low", "high") if any(f"{b}_low" in row for row in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def plot_curves(runs: dict, out, cols: Sequence[str] = BENCHES, bands: dict | None = None) -> None:
    """Accuracy against training step, one panel per benchmark and one for the average (Fig. 3a / 4); each
    benchmark's 95% interval as a band where there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = [*cols, "average"] if averaged(cols) else cols
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys) if len(keys) > 1 else 6, 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for i, (run, (points, only_base)) in enumerate(runs.items()):
            color = f"C{i % 10}"
            values = {
                s: average(p, averaged(cols)) if key == "average" else p.get(key, (None,))[0]
                for s, p in points.items()
            }
            values = {s: v for s, v in values.items() if v is not None}
            if only_base and values:
                ax.axhline(values[0], color=color, linestyle="--", label=run)
            elif values:
                ax.plot(list(values), list(values.values()), color=color, marker="o", markersize=3, label=run)
            band = {s: (bands or {}).get((run, s, key)) for s in values}
            band = {s: i for s, i in band.items() if i is not None}
            if only_base and band:
                ax.axhspan(band[0].low, band[0].high, color=color, alpha=0.12)
            elif band:
                lows, highs = [i.low for i in band.values()], [i.high for i in band.values()]
                ax.fill_between(list(band), lows, highs, color=color, alpha=0.15, linewidth=0)
        ax.set_title(TITLES.get(key, key))
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=120)
    plt.close(fig)


def parse_questions(spec: str | None) -> dict[str, int]:
    counts = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, _, n = item.partition("=")
        n = n.strip()
        if not name or not (n.isascii() and n.isdigit() and int(n) >= 1):  # isdigit alone takes "²"
            raise DataError(f"--questions: expected run=N with N >= 1, got {item!r}")
        counts[name.strip()] = int(n)
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = "\n\n".join(__doc__.split("\n\n")[:2])
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("OUT", "outputs")) / "eval"  # OUT: the artifacts' root, as in scripts/
    p.add_argument("--eval_dir", type=Path, default=default, help="eval/evaluate.py's --out (default: $OUT/eval)")
    p.add_argument("--runs", help="comma-separated run folders, in table order (default: all, base models first)")
    p.add_argument("--step", choices=("latest", "best"), default="latest", help="which step is a run's row")
    p.add_argument("--questions", help="training prompts per run for the #questions column: run=N,run=N")
    p.add_argument("--paper", action="store_true", help="add the paper's Table 2 rows")
    p.add_argument("--out", type=Path, help="folder for summary.md, summary.csv, curves.png (default: --eval_dir)")
    p.add_argument("--no_plot", action="store_true", help="skip curves.png")
    p.add_argument(
        "--compare",
        metavar="A,B",
        help="the paired difference A - B per benchmark with its 95%% interval (needs <bench>.jsonl)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()] if args.runs else None
    out = args.out or args.eval_dir
    written = ["summary.md", "summary.csv", *([] if args.no_plot else ["curves.png"])]
    try:
        results = sorted(args.eval_dir.glob("*/*/results.json")) if args.eval_dir.is_dir() else []
        refuse_overwriting_inputs(results, [out / w for w in written])
        refuse_unwritable_outputs([out / w for w in written])
        pair = tuple(r.strip() for r in args.compare.split(",")) if args.compare else None
        if pair is not None and (len(pair) != 2 or not all(pair) or pair[0] == pair[1]):
            raise DataError(f"--compare: expected two different runs A,B, got {args.compare!r}")
        runs = load_runs(args.eval_dir, names)
        cols = columns(runs, args.paper)
        rows = table_rows(runs, args.step, parse_questions(args.questions), cols)
        scores = load_scores(args.eval_dir, runs)
        bands = intervals(scores)
        for row in rows:
            for b in cols:
                if (row["run"], row["_step"], b) in bands:
                    i = bands[row["run"], row["_step"], b]
                    row[f"{b}_low"], row[f"{b}_high"] = i.low, i.high
        diffs = compare(rows, scores, pair, cols) if pair else None
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows += paper_rows() if args.paper else []
    table = markdown(rows, cols) + (compare_markdown(pair, diffs) if diffs else "")
    try:
        with all_or_nothing():
            with atomic_write(out / "summary.md") as f:
                f.write(table)
            with atomic_write(out / "summary.csv") as f:
                f.write(to_csv(rows, cols))
            if not args.no_plot:
                with atomic_write(out / "curves.png", "wb") as f:
                    plot_curves(runs, f, cols, bands)
    except OSError as e:
        print(f"error: cannot write to {out}, nothing written ({e})", file=sys.stderr)
        return 2
    print(table)
    print(f"wrote {', '.join(str(out / w) for w in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
