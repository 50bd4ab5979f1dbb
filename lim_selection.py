"""LIM, Learning Impact Measurement (LIMR paper §2.2): keep the RL prompts whose learning curve follows the model's.

    r_k(i)  = accuracy of prompt i in epoch k = share of its samples in that epoch with reward 1   (k = 1..K)
    r_avg_k = mean of r_k(i) over the scored prompts: the model's average learning curve
    s(i)    = 1 - sum_k (r_k(i) - r_avg_k)^2 / sum_k (1 - r_avg_k)^2
    keep i  when s(i) >= THETA          (THETA = 0.6, K = 21 epochs: 1,389 of MATH-8k's 8,523)

    python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl \\
        --original_prompts_path data/math8k.json --output_path outputs/lim/limr.json \\
        --max_epochs 21 --similarity_threshold 0.6

Inputs (exactly one of; passrate with --num_samples needs none), each read by its reader in limr/ (limr/history.py):
  --train_samples_path  our rollout log (JSONL, one line per sample: {"step", "epoch", "id", "reward", ...}, see
                        limr/rollout_log.py), or a folder of the paper fork's step_{k}.json files
                        ([{"prompt", "response", "reward", "response_length"}, ...], matched to ids by prompt text),
                        or a folder of verl's rollout dumps {k}.jsonl (trainer.rollout_data_dir; matched by
                        "prompt_id" when the reward function put one there, else by the prompt text inside "input":
                        limr/verl_dumps.py). The folder's file names say which.
  --accuracy_path       {prompt_id: [accuracy per epoch, ...]}, e.g. One-Shot-RLVR's acc_step_500.json
  --scores_path         a saved scores file [{"prompt" or "id", "score"}], e.g. the release's scores.json
An epoch is one pass over the prompts. Our log's lines say theirs (the reward server counts passes: OpenRLHF 0.11
runs MATH-8k in 9 steps a pass), so the log needs no --steps_per_epoch, and one that contradicts it is an error.
In step files and verl dumps, and in logs from before the field (with a warning), epoch k holds steps
(k-1)*S+1 .. k*S for S = --steps_per_epoch (default 8: the fork dropped each pass's partial batch, as verl does),
or S = floor(prompts / --train_batch_size).
Histories longer than --max_epochs are cut to it.

Methods (--method; --num_samples K takes the top K instead of a threshold):
  lim           s(i) above, keep s >= 0.6
  linear        the paper's LINEAR baseline, for which it gives no formula. Ours: the LIM score against a
                straight line instead of the average curve, l_k = (k-1)/(K-1), rising from 0 at the first epoch
                to 1 at the last: s(i) = 1 - sum_k (r_k(i) - l_k)^2 / sum_k (1 - l_k)^2, keep s >= 0.7. It rewards
                steady learning over the whole run (unsolved at the start, solved at the end, at an even pace),
                whatever the other prompts did; always-solved and never-solved prompts both score 0.
  rand          K prompts drawn with --seed from the whole prompt file (the paper's RAND); K defaults to LIM's count
  variance      One-Shot-RLVR's historical variance: variance of the accuracy history, top K
  learnability  mean over epochs of p(1-p), top K (prompts solved about half the time)
  dapo          share of epochs whose samples do not all agree (1 - DAPO's zero-variance share), top K
  passrate      no training run: the base model's pass rate p per prompt from eval/evaluate.py run on the prompt
                file (--passrate_path: its <bench>.jsonl); keep prompts with 0 < p < 1, the top K by p(1-p).
                K is --num_samples, else LIM's count from the history given with it (one of the inputs below)
--compare runs all six at one size and prints their overlap (Jaccard). --stability selects with the first K epochs
(K = 1..max_epochs) and compares with the full selection (limr/stability.py): X.stability.json and X.stability.png.
--sweep counts the prompts LIM and LINEAR keep as θ moves from 0 to 1: X.sweep.json and X.sweep.png.
--stopping applies limr/stopping.py's rule (when stage 1 could have stopped, from the epochs so far) to the top K by
LIM after each epoch (K: --num_samples, else the paper's share of the pool): X.stopping.json and X.stopping.png.

Where we depart from the original script (GAIR-NLP/LIMR lim/lim_selection.py), and why:
  - An epoch in which a prompt was not sampled takes the next epoch's value, in one pass, as the original does; a
    prompt that still has a hole (2+ missing epochs in a row, or missing from the last epoch) is not scored, and
    the report counts it by reason instead of dropping it silently.
  - Prompt texts are stripped on both sides of the match (the original stripped one side: KeyError). A text listed
    under two ids (one in MATH-8k) keeps the original's meaning where the input names prompts by text: one history,
    counted once in the average curve, whose score and selection are both ids' (limr/dataset.py, the join rule).
  - An average curve of all 1s (every prompt always solved) makes the denominator 0: every score is then 1.
  - Missing step files, bad records and unknown prompts stop with one clear line; every output is written or
    none is, and none may replace an input.
  - Logs are streamed and step files and dumps read one at a time (the original kept every response of the run in
    memory).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from limr.cli import float_in, int_in, refuse_overwriting_inputs, refuse_unwritable_outputs, same_file
from limr.dataset import (
    first_id_of,
    load_prompts,
    load_scores,
    openrlhf_path,
    scores_by_id,
    select_by_score,
    spread_by_text,
    write_prompt_files,
)
from limr.history import folder_format, load_accuracy, read_training_samples, scan_rollout_log  # noqa: F401
from limr.jsonio import DataError, all_or_nothing, atomic_write, write_json
from limr.paper import LINEAR_THETA, MAX_EPOCHS, STEPS_PER_EPOCH, THETA
from limr.selection_plots import has_matplotlib, plot_stopping, write_plots
from limr.stability import epochs_to_reach, jaccard, stability_rows
from limr.stats import read_question_scores
from limr.step_files import scan_step_files  # noqa: F401  (the readers, for tests that call them from here)
from limr.stopping import paper_size, stopping_result

METHODS = ("lim", "linear", "rand", "variance", "learnability", "dapo")  # --compare runs these six
CHOICES = (*METHODS, "passrate")
# Flag bounds: counts are held per prompt and epoch, and a run needs every step 1 .. epochs x steps_per_epoch, so
# --max_epochs 1e8 would only run out of memory; these are far above any run (the paper: 21 x 8).
EPOCHS_LIMIT, STEPS_LIMIT = 1_000, 1_000_000
TEXT_JOINED = ("step files", "verl dumps")  # formats that name prompts by text: a duplicated text is pooled


# ---------------------------------------------------------------------------------------------------------------
# 1. Histories (read by limr/history.py, one reader per format): fill the holes as the original does, keep the
#    complete ones
# ---------------------------------------------------------------------------------------------------------------


def fill_holes(history: list[float | None]) -> list[float | None]:
    """An epoch without samples takes the next epoch's value, in one left-to-right pass over the original values
    (the original's rule): a single missing epoch is filled, the first of 2+ in a row and a missing last are not."""
    filled = list(history)
    for k in range(len(filled) - 1):
        if filled[k] is None and history[k + 1] is not None:
            filled[k] = history[k + 1]
    return filled


def complete_histories(histories: dict, num_epochs: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Cut every history to num_epochs and fill it; return the complete ones and, for the rest, why not."""
    complete, dropped = {}, {}
    for pid, history in histories.items():
        if len(history) < num_epochs:
            dropped[pid] = f"history shorter than {num_epochs} epochs"
            continue
        h = history[:num_epochs]
        if None in h:
            h = fill_holes(h)
        if all(x is None for x in h):
            dropped[pid] = f"never sampled in the first {num_epochs} epochs"
        elif h[-1] is None:
            dropped[pid] = "not sampled in the last epoch"
        elif None in h:
            dropped[pid] = "not sampled in 2+ epochs in a row"
        else:
            complete[pid] = h
    return complete, dropped


# ---------------------------------------------------------------------------------------------------------------
# 2. Scores
# ---------------------------------------------------------------------------------------------------------------


def mean_curve(complete: dict[str, list[float]]) -> list[float]:
    """r_avg_k: the average accuracy in epoch k over the scored prompts."""
    return [math.fsum(epoch) / len(complete) for epoch in zip(*complete.values(), strict=True)]


def alignment_score(history: list[float], reference: list[float], denominator: float) -> float:
    """s = 1 - sum_k (r_k - ref_k)^2 / sum_k (1 - ref_k)^2 (§2.2): 1 when the prompt follows the reference exactly."""
    return 1 - sum([(r - a) * (r - a) for r, a in zip(history, reference, strict=True)]) / denominator


def lim_scores(complete: dict[str, list[float]]) -> dict[str, float]:
    r_avg = mean_curve(complete)
    denominator = math.fsum((1 - a) ** 2 for a in r_avg)
    if denominator == 0:  # every prompt solved in every epoch: all match the curve exactly (the original divided by 0)
        print(
            "warning: the average curve is all 1s (every prompt always solved); every LIM score is 1", file=sys.stderr
        )
        return dict.fromkeys(complete, 1.0)
    return {pid: alignment_score(h, r_avg, denominator) for pid, h in complete.items()}


def linear_reference(num_epochs: int) -> list[float]:
    """LINEAR's reference: a straight line from 0 at the first epoch to 1 at the last."""
    if num_epochs < 2:
        raise DataError("LINEAR needs at least 2 epochs")
    return [k / (num_epochs - 1) for k in range(num_epochs)]


def linear_scores(complete: dict[str, list[float]]) -> dict[str, float]:
    line = linear_reference(len(next(iter(complete.values()))))
    denominator = math.fsum((1 - a) ** 2 for a in line)
    return {pid: alignment_score(h, line, denominator) for pid, h in complete.items()}


def variance_scores(complete: dict[str, list[float]]) -> dict[str, float]:
    """One-Shot-RLVR's historical variance (data/data_selection.py ranks by np.std of the history: same order)."""
    return {pid: statistics.pvariance(h) for pid, h in complete.items()}


def learnability_scores(complete: dict[str, list[float]]) -> dict[str, float]:
    """Mean over epochs of p(1-p): highest for prompts solved about half the time."""
    return {pid: math.fsum(p * (1 - p) for p in h) / len(h) for pid, h in complete.items()}


def zero_variance_share(history: list[float]) -> float:
    """Share of epochs whose samples all agree (accuracy 0 or 1): DAPO's zero-variance groups, which give GRPO and
    PPO-with-group-baselines no gradient. From accuracies alone this is exact: all agree iff the share solved is 0 or 1."""
    return sum(1 for p in history if p in (0, 1)) / len(history)


def dapo_scores(complete: dict[str, list[float]]) -> dict[str, float]:
    """1 - zero_variance_share: the share of epochs with a learning signal (DAPO drops the other groups)."""
    return {pid: 1 - zero_variance_share(h) for pid, h in complete.items()}


SCORERS = {
    "lim": lim_scores,
    "linear": linear_scores,
    "variance": variance_scores,
    "learnability": learnability_scores,
    "dapo": dapo_scores,
}


def rand_select(pool: list[str], k: int, seed: int) -> list[str]:
    """RAND: k prompts drawn uniformly with a fixed seed, returned in pool order."""
    chosen = set(random.Random(seed).sample(pool, min(k, len(pool))))
    return [pid for pid in pool if pid in chosen]


def passrate_select(passrates: dict[str, float], k: int) -> list[str]:
    """The k prompts of 0 < p < 1 with the highest p(1-p) (solved about half the time), in input order; prompts the
    model never or always solves give no learning signal and are never taken."""
    candidates = {pid: p * (1 - p) for pid, p in passrates.items() if 0 < p < 1}
    return select_by_score(candidates, k=k)


# ---------------------------------------------------------------------------------------------------------------
# 3. Selection
# ---------------------------------------------------------------------------------------------------------------


def threshold_sweep(complete: dict[str, list[float]]) -> list[dict]:
    """How many prompts each thresholded method keeps at each θ of SWEEP_THETAS (LINEAR needs 2+ epochs)."""
    scored = {"lim": lim_scores(complete)}
    if len(next(iter(complete.values()))) >= 2:
        scored["linear"] = linear_scores(complete)
    return [{"theta": t, **{m: sum(s >= t for s in sc.values()) for m, sc in scored.items()}} for t in SWEEP_THETAS]


def compare_methods(complete: dict, pool: list[str], k: int, seed: int) -> dict[str, list[str]]:
    """Every method's selection at the same size k."""
    chosen = {name: select_by_score(scorer(complete), k=k) for name, scorer in SCORERS.items()}
    chosen["rand"] = rand_select(pool, k, seed)
    return {name: chosen[name] for name in METHODS}


# ---------------------------------------------------------------------------------------------------------------
# 4. Outputs: selected prompts (+ OpenRLHF twin), scores, report (plots: limr/selection_plots.py)
# ---------------------------------------------------------------------------------------------------------------


def side_path(output_path: Path, suffix: str) -> Path:
    """limr.json -> limr.scores.json etc.: the run's other outputs sit beside the selection, named after it."""
    return output_path.with_name(f"{output_path.stem}.{suffix}")


PLOTS = ("trajectories.png", "scores.png", "overlap.png")
STABILITY = ("stability.json", "stability.png")
STOPPING = ("stopping.json", "stopping.png")
STABILITY_TARGETS = (0.8, 0.9)  # the Jaccard levels the table reports the epochs for
SWEEP = ("sweep.json", "sweep.png")
SWEEP_THETAS = tuple(i / 20 for i in range(21))  # 0.00, 0.05, ..., 1.00; the paper's θ (0.6, 0.7) are on the grid


def scores_output_is_input(args, scores_out: Path) -> bool:
    """--scores_path's own file named as the scores output already holds the scores: it is left as it is."""
    return bool(args.scores_path) and same_file(scores_out, args.scores_path)


def output_paths(args) -> list[Path]:
    """Every file a run may write: the selection and its OpenRLHF twin, the scores, the report, the plots."""
    out = Path(args.output_path)
    paths = [out, side_path(out, "report.json")]
    if args.original_prompts_path:
        paths.append(openrlhf_path(out))
    scores_out = Path(args.scores_output) if args.scores_output else side_path(out, "scores.json")
    if not scores_output_is_input(args, scores_out):
        paths.append(scores_out)
    if args.stability:
        paths += [side_path(out, name) for name in STABILITY[: 1 if args.no_plots else 2]]
    if args.sweep:
        paths += [side_path(out, name) for name in SWEEP[: 1 if args.no_plots else 2]]
    if args.stopping:
        paths += [side_path(out, name) for name in STOPPING[: 1 if args.no_plots else 2]]
    return paths + ([] if args.no_plots else [side_path(out, name) for name in PLOTS])


def write_outputs(
    args, selected, prompts: list[dict] | None, scores: dict | None, report: dict, complete=None
) -> list:
    """Write the selection, scores and report; returns what to print once everything is in place."""
    out, done = Path(args.output_path), []
    if prompts is not None:
        by_id = {it["id"]: it for it in prompts}
        twin = write_prompt_files(out, [by_id[pid] for pid in selected])
        done.append(f"wrote {len(selected)} prompts to {out} and its OpenRLHF dataset {twin}")
    else:
        write_json(out, [{"id": pid} for pid in selected])
        done.append(f"wrote {len(selected)} ids to {out} (no prompt file: ids only, no OpenRLHF dataset)")
    scores_out = Path(args.scores_output) if args.scores_output else side_path(out, "scores.json")
    if scores is not None and not scores_output_is_input(args, scores_out):
        text = {it["id"]: it["prompt"] for it in prompts} if prompts is not None else None
        rows = [{"id": pid, **({"prompt": text[pid]} if text else {}), "score": s} for pid, s in scores.items()]
        if complete:  # DAPO's zero-variance share beside every method's score (saved scores have no history)
            for row in rows:
                row["zero_variance_share"] = zero_variance_share(complete[row["id"]])
        with atomic_write(scores_out) as f:  # the release's rows, one per line (json.dump's indent is 10x slower)
            f.write("[\n" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n]\n")
        done.append(f"wrote {len(rows)} scores to {scores_out}")
    write_json(side_path(out, "report.json"), report)
    return [*done, f"wrote the report to {side_path(out, 'report.json')}"]


# ---------------------------------------------------------------------------------------------------------------
# 5. Main
# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    about = "\n\n".join(__doc__.split("\n\n")[:3])  # the formula and the command
    p = argparse.ArgumentParser(description=about, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()  # one is needed, except by passrate with --num_samples (run() checks)
    src.add_argument("--train_samples_path", help="rollout log (.jsonl) or folder of the fork's step_{k}.json files")
    src.add_argument("--accuracy_path", help="JSON {prompt_id: [accuracy per epoch]}")
    src.add_argument("--scores_path", help="saved scores [{'prompt' or 'id', 'score'}] to select from")
    p.add_argument("--original_prompts_path", help="prompt file (JSON list of {id, prompt, answer, source})")
    p.add_argument("--output_path", default="outputs/lim/limr.json", help="selected prompts (.json; .jsonl beside)")
    p.add_argument("--steps_per_epoch", type=int_in(1, STEPS_LIMIT),
                   help=f"training steps per epoch of step files and verl dumps (default {STEPS_PER_EPOCH}, the paper's "
                   "fork) and of logs without an epoch field; our log's lines carry their epoch: leave it out")  # fmt: skip
    p.add_argument("--train_batch_size", type=int_in(1, None),
                   help="prompts per step of the run (verl's data.train_batch_size) instead of --steps_per_epoch, for "
                   "step files and verl dumps: steps per epoch = floor(prompts in the file / this)")  # fmt: skip
    p.add_argument("--max_epochs", type=int_in(1, EPOCHS_LIMIT), default=MAX_EPOCHS, help="epochs scored (paper: 21)")
    p.add_argument("--similarity_threshold", type=float_in(None),
                   help=f"keep score >= this (default: lim {THETA}, linear {LINEAR_THETA}); rand, variance, "
                   "learnability, dapo and passrate take as many prompts as LIM keeps at it")  # fmt: skip
    p.add_argument("--method", choices=CHOICES, default="lim")
    p.add_argument("--passrate_path", help="passrate: eval/evaluate.py's <bench>.jsonl of the base model on the "
                   "prompt file (n samples at a temperature), one row per response {id, sample, correct}")  # fmt: skip
    p.add_argument("--num_samples", type=int_in(1), help="select the top K (rand: draw K) instead of a threshold")
    p.add_argument("--seed", type=int, default=0, help="seed of RAND")
    p.add_argument("--compare", action="store_true", help="run every method at one size and print their overlap")
    p.add_argument(
        "--stability",
        action="store_true",
        help="select with the first K epochs for K = 1..max_epochs and compare with the full selection "
        "(Jaccard, Spearman, count; at the same size and at the threshold): X.stability.json and .png",
    )
    p.add_argument(
        "--stopping",
        action="store_true",
        help="when stage 1 could have stopped: limr/stopping.py's rule on the top K by LIM after each epoch "
        "(K: --num_samples, else the paper's share of the pool): X.stopping.json and .png",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="how many prompts LIM and LINEAR keep at each θ in 0, 0.05, .., 1 (the paper's θ marked): "
        "X.sweep.json and X.sweep.png",
    )
    p.add_argument("--scores_output", help="every scored prompt with its score (default: <output>.scores.json)")
    p.add_argument("--no_plots", action="store_true", help="skip the PNG plots")
    return p.parse_args(argv)


def load_inputs(args, prompts: list[dict] | None) -> tuple[dict, dict]:
    """The accuracy histories of every candidate prompt (prompt-file order when there is one) and input counts."""
    duplicates = shared_texts(prompts)
    known = None if prompts is None else {it["id"] for it in prompts}
    if args.accuracy_path:
        read = load_accuracy(args.accuracy_path)
        unknown = [pid for pid in read.accuracies if known is not None and pid not in known]
        if unknown:
            first = unknown[0]
            raise DataError(f"{args.accuracy_path}: {len(unknown)} ids are not in the prompt file (first: {first!r})")
    else:
        path = Path(args.train_samples_path)
        read = read_training_samples(path, prompts, steps_per_epoch(args, prompts), args.max_epochs)
    histories = read.accuracy()
    info = {"format": read.format, "duplicate_ids": duplicates, **read.counts(), "prompts_seen": len(histories)}
    if prompts is not None:
        # formats that name prompts by text pool a duplicated text's samples under its first id; the other ids take
        # its score after scoring (spread_text_scores), so that the text counts once in the average curve
        pooled = duplicates if info["format"] in TEXT_JOINED else {}
        empty = [None] * args.max_epochs
        histories = {it["id"]: histories.get(it["id"], empty) for it in prompts if it["id"] not in pooled}
    return histories, info


def steps_per_epoch(args, prompts: list[dict] | None) -> int | None:
    """--steps_per_epoch, or floor(prompts / --train_batch_size): engines that drop each pass's partial batch."""
    if not args.train_batch_size:
        return args.steps_per_epoch
    path = Path(args.train_samples_path)
    if args.steps_per_epoch or prompts is None or not path.is_dir():
        raise DataError("--train_batch_size goes with a folder of step files or verl dumps and --original_prompts_path"
                        ", without --steps_per_epoch (our log's lines carry their epoch)")  # fmt: skip
    if args.train_batch_size > len(prompts):
        raise DataError(f"--train_batch_size {args.train_batch_size} is more than the {len(prompts)} prompts")
    return len(prompts) // args.train_batch_size


def score_and_select(args, histories: dict, pool: list[str]) -> dict:
    """Score the complete histories with every method needed and select with --method."""
    complete, dropped = complete_histories(histories, args.max_epochs)
    if not complete:
        reasons = Counter(dropped.values()).most_common(1)
        raise DataError(f"no prompt has a complete {args.max_epochs}-epoch history (mostly: {reasons[0][0]})")
    lim = lim_scores(complete)
    theta = args.similarity_threshold
    k = args.num_samples or len(select_by_score(lim, theta if theta is not None else THETA))
    scores, cutoff = None, None
    if args.method == "rand":
        selected = rand_select(pool, k, args.seed)
    else:
        scores = lim if args.method == "lim" else SCORERS[args.method](complete)
        if args.num_samples or args.method in ("variance", "learnability", "dapo"):
            selected = select_by_score(scores, k=k)
        else:
            cutoff = theta if theta is not None else (LINEAR_THETA if args.method == "linear" else THETA)
            selected = select_by_score(scores, cutoff)
    at_defaults = {f"lim >= {THETA}": len(select_by_score(lim, THETA))}
    if args.max_epochs >= 2:  # LINEAR's line needs two epochs; the other methods score one
        at_defaults[f"linear >= {LINEAR_THETA}"] = len(select_by_score(linear_scores(complete), LINEAR_THETA))
    return {"complete": complete, "dropped": dropped, "scores": scores, "selected": selected, "cutoff": cutoff,
            "k": k, "at_default_thresholds": at_defaults, "mean_curve": mean_curve(complete)}  # fmt: skip


def spread_text_scores(result: dict, prompts: list[dict]) -> dict:
    """Step files: a text's samples were scored once, under its first id (it counts once in the average curve, as
    in the original); its history, score and selection now go to every id listed with it (limr.dataset's join)."""
    chosen = set(result["selected"])
    result["scores"] = spread_by_text(result["scores"], prompts)
    result["selected"] = list(spread_by_text({pid: pid for pid in chosen}, prompts))
    result["complete"] = spread_by_text(result["complete"], prompts)
    return result["complete"]


def build_report(args, info: dict, result: dict, n_prompts: int | None, compared: dict | None) -> dict:
    dropped = Counter(result["dropped"].values()) if "dropped" in result else Counter()
    inputs = ("train_samples_path", "accuracy_path", "scores_path", "passrate_path", "original_prompts_path")
    params = ("steps_per_epoch", "max_epochs", "similarity_threshold", "num_samples", "seed")
    params += ("train_batch_size",) if args.train_batch_size else ()  # (absent otherwise: reports stay as they were)
    report = {
        "method": args.method,
        "inputs": {k: getattr(args, k) for k in inputs},
        "params": {k: getattr(args, k) for k in params},
        "prompts_in_file": n_prompts,
        **{k: v for k, v in info.items() if k != "duplicate_ids"},
        "duplicate_prompt_texts": [{"ids": [first, dup]} for dup, first in info.get("duplicate_ids", {}).items()],
        "scored": len(result.get("complete") or result.get("scores") or {}),
        "dropped": dict(dropped.most_common()),
        "selected": len(result["selected"]),
        "cutoff": result.get("cutoff"),
        "at_default_thresholds": result.get("at_default_thresholds"),
        "mean_curve": result.get("mean_curve"),
    }
    if compared:
        names = list(compared)
        report["compare"] = {"size": len(compared["lim"]), "jaccard": {
            a: {b: round(jaccard(compared[a], compared[b]), 4) for b in names} for a in names}}  # fmt: skip
    return report


def print_report(report: dict) -> None:
    print(f"prompts: {report['prompts_in_file'] or '-'} in the prompt file, {report['prompts_seen']} in the input")
    if report.get("samples") is not None:
        ignored = report["after_max_epochs"]
        print(f"samples: {report['samples']} read ({report['format']}), {ignored} after the last epoch ignored")
    for reason, n in report["dropped"].items():
        print(f"  not scored: {n} {reason}")
    print(f"scored: {report['scored']}; selected with {report['method']}: {report['selected']}")
    if report.get("format") == "pass rates":
        print(f"  pass rates over {report['samples_per_prompt']} samples: {report['never_solved']} never solved, "
              f"{report['always_solved']} always solved (never selected); size: {report['size_from']}")  # fmt: skip
    if report.get("at_default_thresholds"):
        counts = ", ".join(f"{k}: {v}" for k, v in report["at_default_thresholds"].items())
        print(f"  at the paper's thresholds: {counts}")
    if report.get("mean_curve"):
        print("average curve: " + " ".join(f"{a:.2f}" for a in report["mean_curve"]))
    if "compare" in report:
        names = list(report["compare"]["jaccard"])
        print(f"overlap (Jaccard) at {report['compare']['size']} prompts each:")
        print(" " * 13 + "".join(f"{b:>13}" for b in names))
        for a in names:
            print(f"{a:>13}" + "".join(f"{report['compare']['jaccard'][a][b]:>13.3f}" for b in names))


def run_stability(args, complete: dict, result: dict) -> list[dict]:
    """Rows of limr.stability for --method, at the full selection's size and (for thresholded runs) its cut-off."""
    scorer = lim_scores if args.method == "lim" else SCORERS[args.method]
    first = 2 if args.method == "linear" else 1  # a straight line needs two points
    if args.max_epochs < first:
        raise DataError(f"--stability with {args.method} needs --max_epochs >= {first}")
    with tqdm(total=args.max_epochs - first + 1, desc="stability (epochs)", disable=None) as bar:
        return stability_rows(
            complete, scorer, select_by_score, result["cutoff"], len(result["selected"]), first, lambda: bar.update()
        )


def stability_summary(rows: list[dict], k_max: int) -> dict:
    """Per mode and Jaccard target: the epochs from which the selection stays there, and stage 1's share saved."""
    summary = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        for target in STABILITY_TARGETS:
            k = epochs_to_reach(rows, mode, target)
            summary[f"{mode}, jaccard >= {target}"] = {"epochs": k, "saved": None if k is None else 1 - k / k_max}
    return summary


def print_stability(rows: list[dict], summary: dict) -> None:
    print("stability: first K epochs against all (Jaccard, Spearman of the scores, selected)")
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    print(f"{'K':>4} {'spearman':>9}" + "".join(f" | {m + ' jaccard':>20} {'selected':>8}" for m in modes))
    by_k = {}
    for r in rows:
        by_k.setdefault(r["epochs"], {})[r["mode"]] = r
    for k, row in by_k.items():
        rho = row[modes[0]]["spearman"]
        cells = "".join(f" | {row[m]['jaccard']:>20.3f} {row[m]['selected']:>8}" for m in modes)
        print(f"{k:>4} {'-' if rho is None else f'{rho:.3f}':>9}" + cells)
    for name, v in summary.items():
        when = "never before the last epoch" if v["epochs"] is None else f"from {v['epochs']} epochs"
        saved = "" if v["saved"] is None else f" ({v['saved']:.0%} of stage 1 saved)"
        print(f"  {name}: {when}{saved}")


def print_sweep(rows: list[dict]) -> None:
    methods = [m for m in ("lim", "linear") if m in rows[0]]
    print("prompts kept against the threshold (* the paper's θ)")
    print(f"{'theta':>6}" + "".join(f"{m:>10}" for m in methods))
    marks = {"lim": THETA, "linear": LINEAR_THETA}
    for r in rows:
        cells = "".join(f"{str(r[m]) + ('*' if r['theta'] == marks[m] else ' '):>10}" for m in methods)
        print(f"{r['theta']:>6.2f}" + cells)


def print_stopping(result: dict) -> None:
    """Per epoch the rule's inputs (the top K's Jaccard with the one before) and verdict; then what it saves."""
    rule, k = result["rule"], result["num_samples"]
    print(f"stopping (limr/stopping.py): top {k} by LIM after each epoch; stable once its Jaccard with the top {k} "
          f"{rule['window']} epoch(s) before is >= {rule['level']} for {rule['patience']} epochs in a row")  # fmt: skip
    print(f"{'epoch':>6} {'jaccard':>8} {'kept':>6} {'stable':>7}")
    for r in result["rows"]:
        similar = "-" if r["jaccard_previous"] is None else f"{r['jaccard_previous']:.3f}"
        kept = "-" if r["overlap_previous"] is None else r["overlap_previous"]
        print(f"{r['epoch']:>6} {similar:>8} {kept:>6} {'yes' if r['stable'] else 'no':>7}")
    if result["stop_epoch"] is None:
        print(f"  never stable in the {len(result['rows'])} epochs given: stage 1 could not have stopped early")
    else:
        print(f"  stop at epoch {result['stop_epoch']}: its top {k} has Jaccard {result['jaccard_with_all_epochs']:.3f} "
              f"with the top {k} from all {result['epochs_given']} epochs; {result['stage1_saved']:.0%} of stage 1 "
              "saved")  # fmt: skip


def write_stopping(out: Path, result: dict, no_plots: bool) -> list[str]:
    """X.stopping.json and, beside the stability plot, X.stopping.png (inside the caller's all-or-nothing)."""
    write_json(side_path(out, "stopping.json"), result)
    done = [f"wrote the stopping rule's verdicts to {side_path(out, 'stopping.json')}"]
    if not no_plots and has_matplotlib():
        plot_stopping(side_path(out, "stopping.png"), result)
    return done


def select_from_scores(args, prompts: list[dict] | None) -> tuple[dict, dict]:
    """--scores_path: the threshold (or top K) over saved scores, in prompt-file order like the release's limr.json."""
    if args.method != "lim" or args.compare:
        raise DataError("--scores_path selects from saved scores: only --method lim, without --compare")
    scores = read_scores(args.scores_path, prompts)
    cutoff = None if args.num_samples else (THETA if args.similarity_threshold is None else args.similarity_threshold)
    selected = select_by_score(scores, cutoff, args.num_samples)
    info = {"prompts_seen": len(scores), "duplicate_ids": shared_texts(prompts)}
    return {"scores": scores, "selected": selected, "cutoff": cutoff}, info


def read_scores(path: str, prompts: list[dict] | None) -> dict[str, float]:
    """A saved scores file as {id: score}, joined to the prompt file by limr.dataset's rule."""
    rows = load_scores(path)
    if prompts is None and any("id" not in row for row in rows):
        raise DataError(f"{path}: rows carry prompt texts, not ids: pass --original_prompts_path")
    return scores_by_id(Path(path).name, rows, prompts, "the prompt file")


def shared_texts(prompts: list[dict] | None) -> dict[str, str]:
    """{id: the first id listed with the same prompt text}, for every id that is not the first (limr.dataset)."""
    return {pid: first for pid, first in first_id_of(prompts or []).items() if pid != first}


def check_method_inputs(args) -> None:
    """The inputs each method needs, before anything is read."""
    history = args.train_samples_path or args.accuracy_path or args.scores_path
    if args.method != "passrate":
        if args.passrate_path:
            raise DataError("--passrate_path goes with --method passrate")
        if not history:
            raise DataError("pass one of --train_samples_path, --accuracy_path, --scores_path")
        return
    if not args.passrate_path or not args.original_prompts_path:
        raise DataError("--method passrate needs --passrate_path and --original_prompts_path (the prompt file)")
    if not history and not args.num_samples:
        raise DataError(
            "--method passrate takes LIM's count: pass a history (--train_samples_path, --accuracy_path or "
            "--scores_path) or --num_samples K"
        )
    if args.compare or args.stability or args.sweep:
        raise DataError("--compare, --stability and --sweep need accuracy histories: not with --method passrate")


def lim_count(args, prompts: list[dict]) -> int:
    """How many prompts LIM keeps at --similarity_threshold (default 0.6) on the given history or saved scores."""
    theta = THETA if args.similarity_threshold is None else args.similarity_threshold
    if args.scores_path:
        return len(select_by_score(read_scores(args.scores_path, prompts), theta))
    histories, _ = load_inputs(args, prompts)
    complete, _ = complete_histories(histories, args.max_epochs)
    if not complete:
        raise DataError(f"no prompt has a complete {args.max_epochs}-epoch history: cannot count LIM's selection")
    return len(select_by_score(lim_scores(complete), theta))


def select_by_passrate(args, prompts: list[dict]) -> tuple[dict, dict]:
    """--method passrate: pass rates from the evaluation run, in prompt-file order; the top K by p(1-p)."""
    samples = read_question_scores(args.passrate_path)
    known = {it["id"] for it in prompts}
    unknown = [pid for pid in samples if pid not in known]
    if unknown:
        raise DataError(f"{args.passrate_path}: {len(unknown)} ids are not in the prompt file (first: {unknown[0]!r})")
    rate = {pid: math.fsum(scores) / len(scores) for pid, scores in samples.items()}
    passrates = {it["id"]: rate[it["id"]] for it in prompts if it["id"] in rate}
    dropped = {it["id"]: f"no pass rate in {Path(args.passrate_path).name}" for it in prompts if it["id"] not in rate}
    k = args.num_samples or lim_count(args, prompts)
    info = {
        "format": "pass rates",
        "prompts_seen": len(passrates),
        "samples_per_prompt": len(next(iter(samples.values()))),
        "never_solved": sum(p == 0 for p in passrates.values()),
        "always_solved": sum(p == 1 for p in passrates.values()),
        "size_from": "--num_samples" if args.num_samples else "LIM's count",
    }
    result = {"scores": passrates, "selected": passrate_select(passrates, k), "cutoff": None, "k": k}
    return result | {"dropped": dropped}, info


def run(args) -> None:
    if not args.output_path.endswith(".json"):
        raise DataError(f"--output_path must end in .json (its OpenRLHF twin goes beside it): {args.output_path}")
    if args.train_samples_path and not args.original_prompts_path and Path(args.train_samples_path).is_dir():
        raise DataError(f"{folder_format(Path(args.train_samples_path))} name prompts by text: pass "
                        "--original_prompts_path")  # fmt: skip
    check_method_inputs(args)
    inputs = (args.train_samples_path, args.accuracy_path, args.scores_path, args.passrate_path,
              args.original_prompts_path)  # fmt: skip
    if args.sweep and args.scores_path:
        raise DataError("--sweep scores LIM and LINEAR from accuracy histories: not with --scores_path")
    if args.stability and (args.scores_path or args.method == "rand"):
        raise DataError("--stability needs accuracy histories and a scoring method (not --scores_path, not rand)")
    if args.stopping and (args.scores_path or args.method != "lim"):
        raise DataError("--stopping applies LIM to accuracy histories: only --method lim, not with --scores_path")
    refuse_overwriting_inputs(inputs, output_paths(args))  # before anything is read: a log is days of GPU time
    refuse_unwritable_outputs(output_paths(args))
    prompts = load_prompts(args.original_prompts_path) if args.original_prompts_path else None
    complete, compared, stability, sweep, stopping = None, None, None, None, None
    if args.method == "passrate":
        result, info = select_by_passrate(args, prompts)
    elif args.scores_path:
        result, info = select_from_scores(args, prompts)
    else:
        histories, info = load_inputs(args, prompts)
        pool = [it["id"] for it in prompts] if prompts is not None else list(histories)
        result = score_and_select(args, histories, pool)
        complete = result["complete"]
        if args.compare:
            compared = compare_methods(complete, pool, result["k"], args.seed)
        if args.stability:
            stability = run_stability(args, complete, result)
        if args.sweep:
            sweep = threshold_sweep(complete)
        if args.stopping:
            stopping = stopping_result(list(complete.values()), args.num_samples or paper_size(len(complete)))
        if info["format"] in TEXT_JOINED and result["scores"] is not None:
            complete = spread_text_scores(result, prompts)
    report = build_report(args, info, result, None if prompts is None else len(prompts), compared)
    if stability is not None:
        report["stability"] = stability_summary(stability, args.max_epochs)
    if stopping is not None:  # the verdict, and the hindsight the whole history gives (rows: X.stopping.json)
        report["stopping"] = {k: v for k, v in stopping.items() if k != "rows"}
    print_report(report)
    if stability is not None:
        print_stability(stability, report["stability"])
    if sweep is not None:
        print_sweep(sweep)
    if stopping is not None:
        print_stopping(stopping)
    try:
        with all_or_nothing():  # every output or none: a full disk leaves no selection without its twin
            done = write_outputs(args, result["selected"], prompts, result["scores"], report, complete)
            if sweep is not None:
                write_json(side_path(Path(args.output_path), "sweep.json"), sweep)
                done.append(f"wrote the size-threshold table to {side_path(Path(args.output_path), 'sweep.json')}")
            if stability is not None:
                write_json(side_path(Path(args.output_path), "stability.json"), stability)
                done.append(f"wrote the stability table to {side_path(Path(args.output_path), 'stability.json')}")
            if stopping is not None:
                done += write_stopping(Path(args.output_path), stopping, args.no_plots)
            if not args.no_plots:
                reference = linear_reference(args.max_epochs) if args.method == "linear" else result.get("mean_curve")
                done += write_plots(Path(args.output_path), args.method, reference, complete, result["scores"],
                                    set(result["selected"]), result["cutoff"], compared, stability, sweep,
                                    STABILITY_TARGETS)  # fmt: skip
    except OSError as e:
        raise DataError(f"cannot write the outputs, none written: {e}") from None
    print("\n".join(done))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
