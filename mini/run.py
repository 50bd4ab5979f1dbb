"""python mini/run.py [--size tiny|default|gpu] [--out outputs/mini] [--seeds 0[,1,...]] [--overwrite]

The whole LIMR loop in miniature, with the cluster path's own parts at every hand-off:
  1. tasks      a seeded synthetic arithmetic family (mini/tasks.py): training pool, held-out test set, warm-up set,
                written as data/prepare.py writes prompts (pool.json + its OpenRLHF .jsonl twin) and benchmarks;
  2. warm-up    a tiny Qwen2-architecture policy with a local character tokenizer, supervised on worked solutions;
  3. stage 1    GRPO (TRL's GRPOTrainer) on the whole pool for several epochs, every sample rewarded and logged by
                train/reward_server.py over loopback HTTP, as OpenRLHF's engines call it;
  4. selection  lim_selection.py on that rollout log: LIM, RAND and LINEAR of one size, the paper's share of the
                pool (1,389 / 8,523, in whole steps), or LIM at --lim_threshold and the others of its size; and
                PASSRATE, the cheap proxy (issue 15): eval/eval.sh runs the warm-up model on the pool, and
                lim_selection.py --method passrate keeps LIMR's count of the prompts it sometimes solves;
  5. stage 2    GRPO again from the warm-up checkpoint on FULL, LIMR, RAND, LINEAR and PASSRATE with equal compute
                (same steps, prompts per step and samples per prompt);
  6. eval       bash eval/eval.sh (transformers backend) on each run's checkpoint and on the warm-up model: the
                held-out set greedy, 4 samples at T 0.4 (the primary metric) and 4 at the training temperature;
  7. report     eval/summarize.py (summary.md, curves.png), then mini/report.py: report.md with 95% intervals.
With several --seeds each seed runs into <out>/seed<N>/ and report.md covers them all: means over seeds and paired
differences, each with its interval. Sizes: tiny (CI, a few minutes), default (make demo, 2 CPU cores), gpu (one
GPU, torch only). Deterministic for a seed on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from limr.paper import LIMR_SIZE, MATH8K_SIZE

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    # pool, test: prompts; batch B prompts a step, group G samples a prompt; the pool and LIM's subset are whole steps.
    # RL: Adam at rl_lr on every weight but the final norm's gain, which gets gain_lr (mini/grpo.py: optimizer).
    # eval_every: a stage-2 checkpoint every N steps, each evaluated under every protocol; None: the last one only.
    "tiny": dict(pool=64, test=64, warm=4000, sft_steps=700, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                 heads=4, batch=16, group=8, epochs=4, stage2_steps=12, eval_every=None, max_new=40, eval_samples=2,
                 temperature=1.0, rl_lr=2e-5, gain_lr=1e-1, device="cpu"),
    "default": dict(pool=512, test=1000, warm=4000, sft_steps=800, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                    heads=4, batch=32, group=8, epochs=6, stage2_steps=32, eval_every=None, max_new=40, eval_samples=4,
                    temperature=1.0, rl_lr=2e-5, gain_lr=1e-1, device="cpu"),
    "gpu": dict(pool=2048, test=2000, warm=20000, sft_steps=2000, sft_batch=64, sft_lr=2e-3, hidden=256, layers=4,
                heads=8, batch=64, group=8, epochs=10, stage2_steps=160, eval_every=None, max_new=40, eval_samples=4,
                temperature=1.0, rl_lr=1e-5, gain_lr=5e-2, device="cuda"),
}  # fmt: skip
SHARE = LIMR_SIZE / MATH8K_SIZE  # the paper kept 16% of its pool
RUNS = {"full": None, "limr": "lim", "rand": "rand", "linear": "linear", "passrate": "passrate"}  # run -> --method
POOL = "pool"  # the training prompts as a benchmark (data/pool.json): the warm-up's pass rates for PASSRATE
BENCH = "mini"  # the held-out set's name in the evaluation harness: greedy, MATH500's protocol
# the paper's protocols on one held-out set, each a benchmark of its own for eval/evaluate.py: greedy (MATH500),
# eval_samples at T 0.4 (AIME24 / AMC23: 4 samples) and at the training temperature
SAMPLED = {"mini_t04": 0.4, "mini_t10": 1.0}
PRIMARY = "mini_t04"  # named before any subset result was seen: the paper's protocol for AIME24 and AMC23
EVAL_BATCH = 256  # sequences per generate call: a tiny model on a CPU is bound by per-call overhead
STUDY = {"default": ROOT / "mini" / "study.json"}  # the committed multi-seed study that `make demo` prints beside
# What a run writes at the top of --out, listed in MANIFEST there before anything else is written: --overwrite deletes
# exactly the entries an earlier run's manifest lists, so a user's own files in --out are never touched.
MANIFEST = ".mini-run.json"
SEED_ENTRIES = ("data", "warmup", "passrate", "rollouts", "stage1", "select", *RUNS, "eval", "summary.md",
                "summary.csv", "curves.png", "timings.json")  # fmt: skip
REPORT_ENTRIES = ("report.md", "report.json", "stage1_and_lim.png")


def banner(i: int, title: str) -> None:
    print(f"\n{'=' * 100}\n== {i}/7 {title}\n{'=' * 100}", flush=True)


def run(cmd: list[str]) -> None:
    """A repo entry point, as a user would run it (the same interpreter)."""
    print("$", " ".join(str(c) for c in cmd), flush=True)
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def protocols(cfg: dict) -> dict[str, dict]:
    """The held-out set's evaluation settings, one benchmark name per protocol (eval/evaluate.py --settings)."""
    greedy = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": cfg["max_new"]}
    sampled = {b: {**greedy, "n": cfg["eval_samples"], "temperature": t} for b, t in SAMPLED.items()}
    return {BENCH: greedy, **sampled}


def passrate_protocol(cfg: dict) -> dict[str, dict]:
    """PASSRATE's pass rates: one GRPO group per prompt, G samples at the training temperature (top_p 1, as
    mini/grpo.py samples). p is then the chance that a stage-1 sample of the prompt is right at the start, and
    0 < p < 1 the prompts whose first group would carry a signal; it costs one stage-1 epoch of generation."""
    return {
        POOL: {"n": cfg["group"], "temperature": cfg["temperature"], "top_p": 1.0, "max_new_tokens": cfg["max_new"]}
    }


def titles(cfg: dict) -> dict[str, str]:
    return {
        b: "greedy" if s["n"] == 1 else f"{s['n']} samples at T {s['temperature']}" for b, s in protocols(cfg).items()
    }


def write_tasks(out: Path, pool: list[dict], test: list[dict], cfg: dict) -> Path:
    """data/pool.json (+ pool.jsonl, OpenRLHF's input), the held-out set once per protocol (<bench>.jsonl: the
    harness reads a benchmark's questions from its own file) and the settings tables for eval/evaluate.py: the
    held-out set's (benchmarks.json) and the pool's for PASSRATE (passrate.json)."""
    from limr.dataset import write_prompt_files
    from limr.jsonio import write_json, write_jsonl

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_prompt_files(data / "pool.json", [{k: it[k] for k in ("id", "prompt", "answer", "source")} for it in pool])
    settings = protocols(cfg)
    for bench in settings:
        write_jsonl(
            data / f"{bench}.jsonl", [{"id": t["id"], "question": t["prompt"], "answer": t["answer"]} for t in test]
        )
    write_json(
        data / "benchmarks.json", {"_source": "mini/run.py: the held-out set, one entry per protocol", **settings}
    )
    write_json(data / "passrate.json", {"_source": "mini/run.py: the pool, for PASSRATE", **passrate_protocol(cfg)})
    return data


def seed_list(text: str) -> list[int]:
    """--seeds 0,1,2: distinct non-negative integers."""
    from limr.cli import int_in

    seeds = [int_in(0)(t.strip()) for t in text.split(",")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a seed")
    return seeds


def parse_args(argv=None):
    from limr.cli import float_in, int_in

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZES, default="default")
    p.add_argument("--out", type=Path, default=Path("outputs/mini"))
    p.add_argument("--seeds", type=seed_list, default=[0],
                   help="comma-separated: one seed writes into --out, several into --out/seed<N> and a study table")  # fmt: skip
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"delete what an earlier run wrote in --out (listed in its {MANIFEST}) first; else --out must be empty",
    )
    p.add_argument(
        "--workers", type=int_in(1, 64), default=2, help="grading processes of the reward server and evaluation"
    )
    p.add_argument("--lim_threshold", type=float_in(0.0, 1.0),
                   help="LIM keeps s >= this (the paper: 0.6) instead of the paper's share of the pool")  # fmt: skip
    return p.parse_args(argv)


def subset_size(pool: int, batch: int) -> int:
    """The paper's share of the pool, rounded to whole steps of `batch` prompts (at least one)."""
    return max(1, round(pool * SHARE / batch)) * batch


def planned_entries(seeds: list[int]) -> list[str]:
    """The names a run with these seeds writes at the top of --out (one seed's folders, or seed<N> for each)."""
    per_seed = list(dict.fromkeys(SEED_ENTRIES)) if len(seeds) == 1 else [f"seed{s}" for s in seeds]
    return [*per_seed, *REPORT_ENTRIES]


def read_manifest(path: Path) -> list[str]:
    """An earlier run's entries; each must be a plain name in --out (a hand-edited `../x` deletes nothing)."""
    from limr.jsonio import DataError, read_json

    body = read_json(path)
    entries = body.get("entries") if isinstance(body, dict) else None
    names_ok = isinstance(entries, list) and all(
        isinstance(n, str) and n not in ("", ".", "..", MANIFEST) and not any(c in n for c in "/\\\0") for n in entries
    )
    if not names_ok:
        raise DataError(f"{path}: not a mini/run.py manifest (a list of names in 'entries'): not deleting anything")
    return entries


def prepare_out(out: Path, seeds: list[int], overwrite: bool) -> None:
    """Make --out ready for a run, and list what the run will write there (MANIFEST) before it writes anything.

    An absent or empty folder is used as it is. With --overwrite, a folder an earlier run wrote (it has MANIFEST)
    loses exactly the entries listed there, whatever else it holds; one without MANIFEST, an --out that is not a
    folder, or a user's file where this run would write is refused (DataError) and nothing is deleted.
    """
    from limr.jsonio import DataError, write_json

    if os.path.lexists(out) and not out.is_dir():
        raise DataError(f"{out} is not a folder: give another --out")
    planned = planned_entries(seeds)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(
                f"{out} is not empty: pass --overwrite to replace an earlier run's output, or another --out"
            )
        if not (out / MANIFEST).is_file():  # --overwrite deletes only what an earlier run wrote
            raise DataError(f"{out} is not a mini/run.py output folder: not deleting it")
        earlier = read_manifest(out / MANIFEST)
        foreign = [name for name in planned if os.path.lexists(out / name) and name not in earlier]
        if foreign:
            raise DataError(f"{out / foreign[0]} was not written by mini/run.py: not replacing it (move it away)")
        for name in earlier:
            entry = out / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif os.path.lexists(entry):
                entry.unlink()
    write_json(out / MANIFEST, {"written_by": "mini/run.py", "entries": planned})


def main(argv=None) -> int:
    args = parse_args(argv)
    out, cfg = args.out, SIZES[args.size]
    # OpenMP threads that spin while waiting starve each other when the cores are shared (a loaded CI machine):
    # one training step measured 9 s spinning against 0.2 s passive. Set before torch loads; children inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if cfg["device"] == "cpu":
        torch.set_num_threads(2)  # one thread count, one result: the default size's times are for 2 cores
    elif not torch.cuda.is_available():
        print(f"error: --size {args.size} needs a GPU (torch sees none); use --size default", file=sys.stderr)
        return 2
    from limr.jsonio import DataError

    try:
        prepare_out(out, args.seeds, args.overwrite)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    single = len(args.seeds) == 1
    seed_dirs = {seed: out if single else out / f"seed{seed}" for seed in args.seeds}
    facts, times, questions = {}, {}, {}
    for seed, folder in seed_dirs.items():
        if not single:
            print(f"\n{'#' * 100}\n# seed {seed} -> {folder}\n{'#' * 100}", flush=True)
        facts[seed], times[seed], questions = run_seed(args, cfg, seed, folder)
    write_report(out, cfg, args.size, seed_dirs, facts, times, questions)
    return 0


def write_report(out: Path, cfg: dict, size: str, seed_dirs: dict, facts: dict, times: dict, questions: dict) -> None:
    """report.md / report.json: every run's accuracy per protocol with intervals, the paired differences, stage 1's
    curve, θ's count and the subsets' levels; for one seed of a size with a committed study, the study beside it."""
    from limr.jsonio import read_json, write_json
    from mini import report

    t0 = time.time()
    runs = [r for r in report.RUN_ORDER if r == "warmup" or r in questions]
    result = report.study(seed_dirs, runs, list(protocols(cfg)), PRIMARY)
    text = report.markdown(result, facts, questions, titles(cfg))
    body = {"size": size, **report.as_json(result), "questions": questions, "facts": facts, "seconds": times}
    write_json(out / "report.json", body)
    (out / "report.md").write_text(text)
    scores = {s: [x["score"] for x in read_json(d / "select" / "lim.scores.json")] for s, d in seed_dirs.items()}
    report.plot(facts, scores, out / "stage1_and_lim.png")
    print(f"\n{text}", flush=True)
    committed = STUDY.get(size)
    if committed and committed.is_file() and len(seed_dirs) == 1:
        print(report.beside(result, read_json(committed), titles(cfg)), flush=True)
    print(f"report: {round(time.time() - t0, 1)} s -> {out / 'report.md'}", flush=True)


def run_seed(args, cfg: dict, seed: int, out: Path) -> tuple[dict, dict, dict]:
    """The whole loop for one seed into `out`; returns its selection facts, stage times and prompts per run."""
    from transformers import AutoModelForCausalLM

    from limr.rollout_log import epoch_tally
    from mini import report
    from mini.grpo import train
    from mini.policy import build_model, build_tokenizer, n_params, save, sft
    from mini.serve import reward_server
    from mini.tasks import make_splits

    B, G = cfg["batch"], cfg["group"]
    times, started = {}, time.time()

    def timed(name: str, t0: float) -> None:
        times[name] = round(time.time() - t0, 1)

    banner(1, "tasks")
    t0 = time.time()
    pool, test, warm = make_splits(cfg["pool"], cfg["test"], cfg["warm"], seed)
    data = write_tasks(out, pool, test, cfg)
    print(f"pool {len(pool)}, held-out {len(test)}, warm-up {len(warm)} problems -> {data}")
    timed("tasks", t0)

    banner(2, "warm-up: supervised on worked solutions")
    t0 = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg["hidden"], cfg["layers"], cfg["heads"], seed)
    print(f"Qwen2ForCausalLM, {n_params(model):,} parameters, vocabulary {len(tokenizer)}")
    losses = sft(model, tokenizer, warm, cfg["sft_steps"], cfg["sft_batch"], cfg["sft_lr"], seed, cfg["device"])
    warm_path = save(model.cpu(), tokenizer, out / "warmup")
    print(f"final loss {losses[-1]:.3f} -> {warm_path}")
    timed("warm-up", t0)

    banner(3, "stage 1: GRPO on the whole pool; the reward server writes the rollout log LIM reads")
    t0 = time.time()
    spe = len(pool) // B
    stage1_log = out / "rollouts" / "stage1.jsonl"
    with reward_server(stage1_log, B * G, len(pool) * G, args.workers) as url:
        train(model, tokenizer, pool, cfg, spe * cfg["epochs"], url, out / "stage1" / "ckpt", seed, None)
    accs = epoch_tally(stage1_log).curve()  # the log says each sample's pass
    print("training accuracy by epoch:", " ".join(f"{a:.3f}" for a in accs))
    timed("stage 1", t0)

    share = (
        f"LIM >= {args.lim_threshold}" if args.lim_threshold is not None else f"{subset_size(len(pool), B)} prompts"
    )
    banner(4, f"selection: lim_selection.py, LIM, RAND, LINEAR and PASSRATE of one size ({share})")
    t0 = time.time()
    # PASSRATE's input: the warm-up model on the pool, as the harness would run a base model on a prompt file
    run(["bash", ROOT / "eval" / "eval.sh", "--model", warm_path, "--name", "warmup", "--data_dir", data,
         "--settings", data / "passrate.json", "--out", out / "passrate", "--seed", seed, "--workers", args.workers,
         "--batch_size", EVAL_BATCH])  # fmt: skip
    pass_rates = out / "passrate" / "warmup" / "base" / f"{POOL}.jsonl"
    timed("pass rates", t0)
    t0 = time.time()
    by_id = {it["id"]: it for it in pool}
    subsets = {"full": pool}
    common = ["--train_samples_path", stage1_log, "--original_prompts_path", data / "pool.json",
              "--max_epochs", cfg["epochs"], "--seed", seed]  # fmt: skip
    for name, method in RUNS.items():
        if method is None:
            continue
        if method == "lim" and args.lim_threshold is not None:
            size = ["--similarity_threshold", args.lim_threshold]
        else:
            size = ["--num_samples", len(subsets["limr"]) if "limr" in subsets else subset_size(len(pool), B)]
        # PASSRATE reads no training run, only the pass rates; its size is LIMR's, as RAND's and LINEAR's are
        source = ["--passrate_path", pass_rates, "--original_prompts_path", data / "pool.json"]
        run([sys.executable, ROOT / "lim_selection.py", *(source if method == "passrate" else common), "--method",
             method, *size, "--output_path", out / "select" / f"{method}.json"])  # fmt: skip
        chosen = json.loads((out / "select" / f"{method}.json").read_text())
        subsets[name] = [by_id[c["id"]] for c in chosen]
        print(f"{name}: {len(subsets[name])} prompts")
    timed("selection", t0)

    banner(5, "stage 2: GRPO from the warm-up on FULL / LIMR / RAND / LINEAR / PASSRATE with equal compute")
    t0 = time.time()
    for name, items in subsets.items():
        if len(items) < B:
            print(f"{name}: {len(items)} prompts cannot fill one step of {B}: skipped", flush=True)
            continue
        print(f"-- {name}: {len(items)} prompts, {cfg['stage2_steps']} steps of {B} x {G} samples", flush=True)
        model = AutoModelForCausalLM.from_pretrained(warm_path)
        with reward_server(out / "rollouts" / f"{name}.jsonl", B * G, (len(items) // B) * B * G, args.workers) as url:
            train(model, tokenizer, items, cfg, cfg["stage2_steps"], url, out / name / "ckpt", seed,
                  cfg["eval_every"])  # fmt: skip
    timed("stage 2", t0)

    banner(6, "evaluation: eval/eval.sh on the held-out set, every protocol, the warm-up and each run's checkpoints")
    t0 = time.time()
    harness = ["bash", ROOT / "eval" / "eval.sh", "--data_dir", data, "--settings", data / "benchmarks.json",
               "--out", out / "eval", "--seed", seed, "--workers", args.workers,
               "--batch_size", EVAL_BATCH]  # fmt: skip
    run([*harness, "--model", warm_path, "--name", "warmup"])
    trained = [name for name in subsets if (out / name / "ckpt").is_dir()]
    for name in trained:
        run([*harness, "--run_path", out / name / "ckpt", "--step", "all"])
    timed("evaluation", t0)

    banner(7, "report: eval/summarize.py (curves), then mini/report.py (intervals)")
    questions = {name: len(subsets[name]) for name in trained}
    run([sys.executable, ROOT / "eval" / "summarize.py", "--eval_dir", out / "eval", "--runs",
         ",".join(["warmup", *trained]), "--questions", ",".join(f"{k}={v}" for k, v in questions.items()),
         "--out", out])  # fmt: skip
    times["total"] = round(time.time() - started, 1)
    (out / "timings.json").write_text(json.dumps({"size": args.size, "seed": seed, "seconds": times}) + "\n")
    print(f"seconds: {times}", flush=True)
    return report.seed_facts(out, accs), times, questions


if __name__ == "__main__":
    sys.exit(main())
