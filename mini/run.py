"""python mini/run.py [--size tiny|default|gpu] [--out outputs/mini] [--seeds 0[,1,...]] [--rand_draws N] [--jobs N]
                    [--overwrite]

The whole LIMR loop in miniature, with the cluster path's own parts at every hand-off:
  1. tasks      a seeded synthetic arithmetic family (mini/tasks.py): training pool, validation set, held-out test
                set, warm-up set, written as data/prepare.py writes prompts (pool.json + its OpenRLHF .jsonl twin)
                and benchmarks;
  2. warm-up    a tiny Qwen2-architecture policy with a local character tokenizer (the chat template's fixed
                strings one token each), supervised on worked solutions;
  3. stage 1    GRPO (TRL's GRPOTrainer) on the whole pool for several epochs, every sample rewarded and logged by
                train/reward_server.py over loopback HTTP, as OpenRLHF's engines call it. Beside it, eval/eval.sh
                runs the warm-up on the pool (PASSRATE's pass rates), on the validation set at a grid of temperatures
                (its best one is the baseline RL must beat) and on the held-out set;
  4. selection  lim_selection.py on that rollout log: LIM, RAND (--rand_draws draws) and LINEAR of one size, the
                paper's share of the pool (1,389 / 8,523, in whole steps), or LIM at --lim_threshold and the others
                of its size; and PASSRATE, the cheap proxy (issue 15), LIMR's count of the prompts the warm-up
                sometimes solves;
  5. stage 2    GRPO again from the warm-up checkpoint on FULL, LIMR, RAND, LINEAR and PASSRATE with equal compute
                (same steps, prompts per step and samples per prompt), each run evaluated as soon as it ends: the
                held-out set greedy, 4 samples at T 0.4 (the primary metric) and 4 at the training temperature;
  6. report     eval/summarize.py (summary.md, curves.png), then mini/report.py: report.md with 95% intervals.
Runs and evaluations go --jobs at a time, one torch thread each (mini/numerics.py pins the kernels, so a seed trains
the same model on any x86-64 CPU with AVX2). With several --seeds each seed runs into <out>/seed<N>/ and report.md
covers them all: means over seeds and paired differences, each with its interval over seeds. Sizes: tiny (CI, a few
minutes), default (make demo, 2 CPU cores), gpu (one GPU, torch only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from limr.paper import LIMR_SIZE, MATH8K_SIZE
from mini.report import METHOD_FILES as METHODS  # run -> --method (rand_2 ... are rand); imports no torch

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    # pool, test: prompts; batch B prompts a step, group G samples a prompt; the pool and LIM's subset are whole steps.
    # RL: Adam at rl_lr on every weight but the final norm's gain, which gets gain_lr (mini/grpo.py: optimizer).
    # eval_every: a stage-2 checkpoint every N steps, each evaluated under every protocol; None: the last one only.
    "tiny": dict(pool=64, val=64, test=64, warm=4000, sft_steps=700, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                 heads=4, batch=16, group=8, epochs=4, stage2_steps=12, eval_every=None, max_new=40, eval_samples=2,
                 temperature=1.0, rl_lr=2e-5, gain_lr=1e-1, device="cpu"),
    "default": dict(pool=512, val=500, test=1000, warm=4000, sft_steps=2400, sft_batch=16, sft_lr=3e-3, hidden=64, layers=2,
                    heads=4, batch=32, group=8, epochs=6, stage2_steps=32, eval_every=None, max_new=40, eval_samples=4,
                    temperature=1.0, rl_lr=2e-5, gain_lr=1e-1, device="cpu"),
    "gpu": dict(pool=2048, val=1000, test=2000, warm=20000, sft_steps=2000, sft_batch=64, sft_lr=2e-3, hidden=256, layers=4,
                heads=8, batch=64, group=8, epochs=10, stage2_steps=160, eval_every=None, max_new=40, eval_samples=4,
                temperature=1.0, rl_lr=1e-5, gain_lr=5e-2, device="cuda"),
}  # fmt: skip
SHARE = LIMR_SIZE / MATH8K_SIZE  # the paper kept 16% of its pool
RUNS = {"full": None, **METHODS}  # stage 2's runs (RAND's further draws aside): FULL trains on the whole pool
POOL = "pool"  # the training prompts as a benchmark (data/pool.json): the warm-up's pass rates for PASSRATE
TEST = "mini"  # the held-out set's name in the evaluation harness; greedy is MATH500's protocol
VAL = "val"  # the validation set's: every setting that is tuned is tuned there (the warm-up's best temperature)
# the paper's protocols on one held-out set, each a benchmark of its own for eval/evaluate.py: greedy (MATH500),
# eval_samples at T 0.4 (AIME24 / AMC23: 4 samples) and at the training temperature
SAMPLED = (0.4, 1.0)
PRIMARY = "mini_t04"  # named before any subset result was seen: the paper's protocol for AIME24 and AMC23
# the warm-up's temperatures on validation (0: greedy): the best of them, on the held-out set, is the baseline RL
# must beat (BEST: eval_samples at that temperature; "does RL teach more than a lower temperature?")
TEMPERATURES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.6)
BEST = "mini_best"
EVAL_BATCH = 256  # sequences per generate call: a tiny model on a CPU is bound by per-call overhead
STUDY = {"default": ROOT / "mini" / "study.json"}  # the committed multi-seed study that `make demo` prints beside
# What a run writes at the top of --out, listed in MANIFEST there before anything else is written: --overwrite deletes
# exactly the entries an earlier run's manifest lists, so a user's own files in --out are never touched.
MANIFEST = ".mini-run.json"
SEED_ENTRIES = ("data", "warmup", "passrate", "rollouts", "stage1", "select", *RUNS, "eval", "eval_validation",
                "eval_best", "logs", "jobs",
                "summary.md", "summary.csv", "curves.png", "timings.json")  # fmt: skip
REPORT_ENTRIES = ("report.md", "report.json", "stage1_and_lim.png", "differences.png")


def banner(i: int, title: str) -> None:
    print(f"\n{'=' * 100}\n== {i}/4 {title}\n{'=' * 100}", flush=True)


def child_env() -> dict:
    return {**os.environ, "PYTHON": sys.executable}


def run(cmd: list) -> None:
    """A repo entry point, as a user would run it (the same interpreter), its output here."""
    print("$", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=child_env())


def run_logged(cmd: list, log: Path) -> float:
    """A repo entry point with its output in `log` (jobs run side by side); its seconds. A failure raises with the
    log's last lines."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$", " ".join(str(c) for c in cmd), f"> {log}", flush=True)
    t0 = time.time()
    with open(log, "w") as sink:
        code = subprocess.run([str(c) for c in cmd], stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=child_env()).returncode  # fmt: skip
    if code:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{cmd[1]} exited with {code}; the end of {log}:\n{tail}")
    return round(time.time() - t0, 1)


def side_by_side(chains: dict, jobs: int, times: dict) -> None:
    """Run each chain (a function of no arguments that runs its commands in order) with `jobs` at a time, in the
    order given; each chain's seconds go to `times`. After a failure no further chain starts, and it is raised."""
    started, stop = time.time(), threading.Event()

    def timed(name, chain):
        if stop.is_set():
            return
        t0 = time.time()
        try:
            chain()
        except BaseException:
            stop.set()  # before this future completes: the next chain this worker takes sees it
            raise
        times[name] = round(time.time() - t0, 1)
        print(f"-- done: {name} ({times[name]} s; {round(time.time() - started)} s into this stage)", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(timed, name, chain) for name, chain in chains.items()]
        for future in as_completed(futures):
            future.result()


def bench_name(prefix: str, temperature: float) -> str:
    """mini (greedy), mini_t04 (T 0.4), val_t02 ...: one benchmark of the harness per set and protocol."""
    return prefix if temperature == 0 else f"{prefix}_t{round(temperature * 10):02d}"


def setting(cfg: dict, temperature: float) -> dict:
    """Greedy (one answer) or eval_samples samples at a temperature, top_p 1: one protocol of eval/evaluate.py."""
    n = 1 if temperature == 0 else cfg["eval_samples"]
    return {"n": n, "temperature": temperature, "top_p": 1.0, "max_new_tokens": cfg["max_new"]}


def protocols(cfg: dict) -> dict[str, dict]:
    """The held-out set's reported protocols: greedy, and eval_samples samples at each of SAMPLED's temperatures."""
    return {bench_name(TEST, t): setting(cfg, t) for t in (0.0, *SAMPLED)}


def validation_protocols(cfg: dict, temperatures=TEMPERATURES) -> dict[str, dict]:
    """The validation set under each temperature of the grid: where the warm-up's best temperature is chosen."""
    return {bench_name(VAL, t): setting(cfg, t) for t in temperatures}


def passrate_protocol(cfg: dict) -> dict[str, dict]:
    """PASSRATE's pass rates: one GRPO group per prompt, G samples at the training temperature (top_p 1, as
    mini/grpo.py samples). p is then the chance that a stage-1 sample of the prompt is right at the start, and
    0 < p < 1 the prompts whose first group would carry a signal; it costs one stage-1 epoch of generation."""
    return {
        POOL: {"n": cfg["group"], "temperature": cfg["temperature"], "top_p": 1.0, "max_new_tokens": cfg["max_new"]}
    }


def title(s: dict) -> str:
    return "greedy" if s["n"] == 1 else f"{s['n']} samples at T {s['temperature']}"


def titles(cfg: dict) -> dict[str, str]:
    return {b: title(s) for b, s in protocols(cfg).items()}


def write_questions(data: Path, benches, items: list[dict]) -> None:
    """The set once per protocol (<bench>.jsonl: the harness reads a benchmark's questions from its own file)."""
    from limr.jsonio import write_jsonl

    for bench in benches:
        write_jsonl(data / f"{bench}.jsonl", [{"id": t["id"], "question": t["prompt"], "answer": t["answer"]}
                                              for t in items])  # fmt: skip


def write_tasks(out: Path, splits, cfg: dict) -> Path:
    """data/pool.json (+ pool.jsonl, OpenRLHF's input); the validation and held-out sets once per protocol, with
    their settings tables for eval/evaluate.py (validation.json, benchmarks.json), the pool's for PASSRATE
    (passrate.json); levels.json, each validation and held-out question's difficulty level."""
    from limr.dataset import write_prompt_files
    from limr.jsonio import write_json

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_prompt_files(
        data / "pool.json", [{k: it[k] for k in ("id", "prompt", "answer", "source")} for it in splits.pool]
    )
    write_questions(data, protocols(cfg), splits.test)
    write_questions(data, validation_protocols(cfg), splits.val)
    write_json(data / "benchmarks.json", {"_source": "mini/run.py: the held-out set, one entry per protocol",
                                          **protocols(cfg)})  # fmt: skip
    write_json(data / "validation.json", {"_source": "mini/run.py: the validation set, one entry per temperature",
                                          **validation_protocols(cfg)})  # fmt: skip
    write_json(data / "passrate.json", {"_source": "mini/run.py: the pool, for PASSRATE", **passrate_protocol(cfg)})
    write_json(data / "levels.json", {it["id"]: it["level"] for it in (*splits.val, *splits.test)})
    return data


def best_temperature(eval_dir: Path, run: str) -> tuple[float, dict[float, float]]:
    """The temperature of the grid with the highest mean accuracy on validation (the lower one on a tie), and every
    temperature's accuracy %: chosen on validation, never on the held-out set."""
    from mini.report import final_folder, score_matrix

    folder = final_folder(eval_dir, run)
    accuracy = {t: round(100 * float(score_matrix(folder / f"{bench_name(VAL, t)}.jsonl").mean()), 2)
                for t in TEMPERATURES}  # fmt: skip
    return max(TEMPERATURES, key=lambda t: (accuracy[t], -t)), accuracy


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
    p.add_argument("--jobs", type=int_in(1, 64), default=2,
                   help="runs and evaluations side by side, one torch thread each (default 2: the 2-core machine)")  # fmt: skip
    p.add_argument("--rand_draws", type=int_in(1, 20), default=1,
                   help="RAND drawn this many times a seed (rand, rand_2, ...), its value the mean of the draws")  # fmt: skip
    p.add_argument("--report_only", action="store_true",
                   help="only write report.md / report.json again from the finished run in --out (same --seeds)")  # fmt: skip
    p.add_argument("--lim_threshold", type=float_in(0.0, 1.0),
                   help="LIM keeps s >= this (the paper: 0.6) instead of the paper's share of the pool")  # fmt: skip
    return p.parse_args(argv)


def subset_size(pool: int, batch: int) -> int:
    """The paper's share of the pool, rounded to whole steps of `batch` prompts (at least one)."""
    return max(1, round(pool * SHARE / batch)) * batch


def planned_entries(seeds: list[int], rand_draws: int = 1) -> list[str]:
    """The names a run with these seeds writes at the top of --out (one seed's folders, or seed<N> for each)."""
    one_seed = list(dict.fromkeys([*SEED_ENTRIES, *rand_runs(rand_draws)]))
    per_seed = one_seed if len(seeds) == 1 else [f"seed{s}" for s in seeds]
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


def prepare_out(out: Path, seeds: list[int], overwrite: bool, rand_draws: int = 1) -> None:
    """Make --out ready for a run, and list what the run will write there (MANIFEST) before it writes anything.

    An absent or empty folder is used as it is. With --overwrite, a folder an earlier run wrote (it has MANIFEST)
    loses exactly the entries listed there, whatever else it holds; one without MANIFEST, an --out that is not a
    folder, or a user's file where this run would write is refused (DataError) and nothing is deleted.
    """
    from limr.jsonio import DataError, write_json

    if os.path.lexists(out) and not out.is_dir():
        raise DataError(f"{out} is not a folder: give another --out")
    planned = planned_entries(seeds, rand_draws)
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
    from mini.numerics import pin_cpu_numerics

    print(pin_cpu_numerics(), flush=True)  # the same kernels on every AVX2 machine, one thread a process
    import torch

    if cfg["device"] == "cpu":
        torch.set_num_threads(1)  # one thread count, one result; --jobs runs side by side use the other cores
    elif not torch.cuda.is_available():
        print(f"error: --size {args.size} needs a GPU (torch sees none); use --size default", file=sys.stderr)
        return 2
    from limr.jsonio import DataError

    if args.report_only:
        return report_only(args, cfg)
    try:
        prepare_out(out, args.seeds, args.overwrite, args.rand_draws)
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
    write_report(out, cfg, args.size, seed_dirs, facts, times, questions, args.rand_draws)
    return 0


def write_report(out: Path, cfg: dict, size: str, seed_dirs: dict, facts: dict, times: dict, questions: dict,
                 rand_draws: int = 1) -> None:  # fmt: skip
    """report.md / report.json: every run's accuracy per protocol with intervals, the paired differences, stage 1's
    curve, θ's count and the subsets' levels; for one seed of a size with a committed study, the study beside it."""
    from limr.jsonio import read_json, write_json
    from mini import report

    t0 = time.time()
    runs = [r for r in report.RUN_ORDER if r == "warmup" or r in questions]
    result = report.study(seed_dirs, runs, list(protocols(cfg)), PRIMARY, tuple(rand_runs(rand_draws)))
    text = report.markdown(result, facts, questions, titles(cfg))
    body = {"size": size, **report.as_json(result), "questions": questions, "facts": facts, "seconds": times}
    write_json(out / "report.json", body)
    (out / "report.md").write_text(text)
    scores = {s: [x["score"] for x in read_json(d / "select" / "lim.scores.json")] for s, d in seed_dirs.items()}
    report.plot(facts, scores, out / "stage1_and_lim.png")
    report.plot_differences(result, titles(cfg), out / "differences.png")
    print(f"\n{text}", flush=True)
    committed = STUDY.get(size)
    if committed and committed.is_file() and len(seed_dirs) == 1:
        print(report.beside(result, read_json(committed), titles(cfg)), flush=True)
    print(f"report: {round(time.time() - t0, 1)} s -> {out / 'report.md'}", flush=True)


def rand_runs(draws: int) -> list[str]:
    """RAND's runs: rand, then rand_2 ... for further draws (another --seed to lim_selection.py each)."""
    return ["rand", *(f"rand_{k}" for k in range(2, draws + 1))]


def run_seed(args, cfg: dict, seed: int, out: Path) -> tuple[dict, dict, dict]:
    """The whole loop for one seed into `out`; returns its selection facts, stage times and prompts per run."""
    from limr.jsonio import write_json
    from limr.rollout_log import epoch_tally
    from mini.policy import build_model, build_tokenizer, n_params, save, sft
    from mini.tasks import make_splits

    B = cfg["batch"]
    times, started = {}, time.time()
    logs, jobs = out / "logs", out / "jobs"

    def timed(name: str, t0: float) -> None:
        times[name] = round(time.time() - t0, 1)

    banner(1, "tasks")
    t0 = time.time()
    splits = make_splits(cfg["pool"], cfg["val"], cfg["test"], cfg["warm"], seed)
    data = write_tasks(out, splits, cfg)
    print(f"pool {len(splits.pool)}, validation {len(splits.val)}, held-out {len(splits.test)}, warm-up "
          f"{len(splits.warm)} problems -> {data}")  # fmt: skip
    timed("tasks", t0)

    banner(2, "warm-up: supervised on worked solutions")
    t0 = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg["hidden"], cfg["layers"], cfg["heads"], seed)
    print(f"Qwen2ForCausalLM, {n_params(model):,} parameters, vocabulary {len(tokenizer)}")
    losses = sft(model, tokenizer, splits.warm, cfg["sft_steps"], cfg["sft_batch"], cfg["sft_lr"], seed,
                 cfg["device"])  # fmt: skip
    warm_path = save(model.cpu(), tokenizer, out / "warmup")
    print(f"final loss {losses[-1]:.3f} -> {warm_path}")
    timed("warm-up", t0)

    def job(name: str, prompts: Path, steps: int, save_every) -> list:
        """`python -m mini.grpo` on a job file: GRPO from the warm-up on `prompts`, its rollout log and checkpoints."""
        path = jobs / f"{name}.json"
        write_json(path, {"model": str(warm_path), "prompts": str(prompts), "cfg": cfg, "steps": steps, "seed": seed,
                          "rollout_log": str(out / "rollouts" / f"{name}.jsonl"),
                          "ckpt_dir": str(out / name / "ckpt"), "save_every": save_every, "workers": 1})  # fmt: skip
        return [sys.executable, "-m", "mini.grpo", path]

    # every call names its own --out (eval/, eval_validation/, eval_best/, passrate/)
    harness = ["bash", ROOT / "eval" / "eval.sh", "--data_dir", data, "--seed", seed, "--workers", 1,
               "--batch_size", EVAL_BATCH]  # fmt: skip
    on_warmup = [*harness, "--model", warm_path, "--name", "warmup"]
    chosen = {}

    def warmup_evals() -> None:
        """The warm-up on validation at every temperature of the grid, its best one written as the held-out set's
        BEST protocol, then the warm-up on the held-out set under every protocol and at BEST."""
        run_logged([*on_warmup, "--settings", data / "validation.json", "--out", out / "eval_validation"],
                   logs / "eval-warmup-validation.log")  # fmt: skip
        chosen["temperature"], chosen["validation"] = best_temperature(out / "eval_validation", "warmup")
        write_questions(data, [BEST], splits.test)
        write_json(data / "best.json", {"_source": "mini/run.py: the held-out set at the warm-up's best temperature "
                                        "on validation", BEST: setting(cfg, chosen["temperature"])})  # fmt: skip
        run_logged(
            [*on_warmup, "--settings", data / "benchmarks.json", "--out", out / "eval"], logs / "eval-warmup.log"
        )
        run_logged([*on_warmup, "--settings", data / "best.json", "--out", out / "eval_best"],
                   logs / "eval-warmup-best.log")  # fmt: skip

    banner(3, "stage 1, selection and stage 2, side by side as their inputs are ready (--jobs at a time)")
    print("stage 1: GRPO on the whole pool, the reward server writing the rollout log LIM reads; then lim_selection.py:\n"
          "LIM, RAND, LINEAR and PASSRATE of one size; stage 2: GRPO from the warm-up on FULL (from the start), LIMR,\n"
          "RAND, LINEAR and PASSRATE with equal compute, each run evaluated as soon as it ends; beside them, the warm-up\n"
          "on the pool (PASSRATE's pass rates), on validation (its best temperature) and on the held-out set",
          flush=True)  # fmt: skip
    t0 = time.time()
    stage1_log = out / "rollouts" / "stage1.jsonl"
    pass_rates = out / "passrate" / "warmup" / "base" / f"{POOL}.jsonl"
    spe = len(splits.pool) // B
    subsets = {"full": data / "pool.json"}
    selected = threading.Event()  # set once stage 1 and every selection are done (or failed)
    failed: list[str] = []

    def stage1_and_selection() -> None:
        try:
            run_logged(job("stage1", data / "pool.json", spe * cfg["epochs"], None), logs / "stage1.log")
            for name in ["limr", *rand_runs(args.rand_draws), "linear"]:  # LIM first: its count sizes the others
                select(name)
        except BaseException:
            failed.append("stage 1 or selection")
            raise
        finally:
            selected.set()

    def select(name: str) -> None:
        """lim_selection.py for one run: LIM (the paper's share, or --lim_threshold), or another method at LIMR's size;
        RAND's k-th draw gets seed + 1000 (k - 1). PASSRATE reads no training run, only the warm-up's pass rates."""
        method = METHODS[name.split("_")[0]]
        method_seed = seed + 1000 * (int(name.split("_")[1]) - 1 if "_" in name else 0)
        if name == "limr":
            size = (["--similarity_threshold", args.lim_threshold] if args.lim_threshold is not None
                    else ["--num_samples", subset_size(len(splits.pool), B)])  # fmt: skip
        else:
            size = ["--num_samples", len(json.loads(subsets["limr"].read_text()))]
        if method == "passrate":
            source = ["--passrate_path", pass_rates, "--original_prompts_path", data / "pool.json"]
        else:
            source = ["--train_samples_path", stage1_log, "--original_prompts_path", data / "pool.json",
                      "--max_epochs", cfg["epochs"]]  # fmt: skip
        path = out / "select" / (f"{method}.json" if name in METHODS else f"{name}.json")
        run_logged([sys.executable, ROOT / "lim_selection.py", *source, "--seed", method_seed, "--method", method,
                    *size, "--output_path", path], logs / f"select-{name}.log")  # fmt: skip
        subsets[name] = path

    passrate_ready = threading.Event()

    def warmup_side() -> None:
        try:  # PASSRATE's input: the warm-up on the pool, as the harness runs a base model on a prompt file
            run_logged([*on_warmup, "--settings", data / "passrate.json", "--out", out / "passrate"],
                       logs / "eval-warmup-pool.log")  # fmt: skip
        finally:
            passrate_ready.set()
        warmup_evals()

    def stage2(name: str):
        def chain() -> None:
            if name != "full":  # FULL needs no stage 1; the subsets wait for the selection
                selected.wait()
                if failed:
                    return
                if name == "passrate":
                    passrate_ready.wait()
                    select(name)
                if len(json.loads(subsets[name].read_text())) < B:
                    print(f"{name}: fewer prompts than one step of {B}: not trained", flush=True)
                    return
            run_logged(job(name, subsets[name], cfg["stage2_steps"], cfg["eval_every"]), logs / f"{name}.log")
            on_run = [*harness, "--run_path", out / name / "ckpt", "--step", "all"]
            run_logged(
                [*on_run, "--settings", data / "benchmarks.json", "--out", out / "eval"], logs / f"eval-{name}.log"
            )
            if name == "full":  # what a design choice is judged by: FULL on validation, never the held-out set
                run_logged([*on_run, "--settings", data / "validation.json", "--out", out / "eval_validation",
                            "--benchmarks", f"{bench_name(VAL, 0)},{bench_name(VAL, SAMPLED[0])}"],
                           logs / "eval-full-validation.log")  # fmt: skip

        return chain

    # submission order is start order: a chain waits only for chains submitted before it, so --jobs 1 cannot deadlock
    chains = {"stage 1 and selection": stage1_and_selection,
              "the warm-up's pass rates and evaluations": warmup_side,
              **{f"stage 2: {name}": stage2(name) for name in ["full", "limr", *rand_runs(args.rand_draws), "linear",
                                                                 "passrate"]}}  # fmt: skip
    side_by_side(chains, args.jobs, times)
    accs = epoch_tally(stage1_log).curve()  # the log says each sample's pass
    print("training accuracy by epoch:", " ".join(f"{a:.3f}" for a in accs))
    print(f"the warm-up's best temperature on validation: {chosen['temperature']} (accuracy % by temperature: "
          f"{chosen['validation']})")  # fmt: skip
    questions = trained_runs(out)
    trainable = list(questions)
    print("prompts per trained run:", questions, flush=True)
    timed("stage 1, selection, stage 2 and evaluation", t0)

    banner(4, "report: eval/summarize.py (curves), then mini/report.py (intervals)")
    run([sys.executable, ROOT / "eval" / "summarize.py", "--eval_dir", out / "eval", "--runs",
         ",".join(["warmup", *trainable]), "--questions", ",".join(f"{k}={v}" for k, v in questions.items()),
         "--out", out])  # fmt: skip
    times["total"] = round(time.time() - started, 1)
    (out / "timings.json").write_text(json.dumps({"size": args.size, "seed": seed, "seconds": times}) + "\n")
    print(f"seconds: {times}", flush=True)
    return seed_facts(out), times, questions


def seed_facts(out: Path) -> dict:
    """What a seed's finished run says beside accuracy: stage 1's curve, the selection facts, the best temperature."""
    from limr.rollout_log import epoch_tally
    from mini import report

    facts = report.seed_facts(out, epoch_tally(out / "rollouts" / "stage1.jsonl").curve())
    temperature, validation = best_temperature(out / "eval_validation", "warmup")
    return {**facts, "best_temperature": {"chosen": temperature, "validation_accuracy": validation}}


def trained_runs(out: Path) -> dict[str, int]:
    """A seed's stage-2 runs that trained, with their prompt counts, in stage 2's order."""
    from limr.jsonio import read_json

    draws = sorted((p.name for p in out.glob("rand_*")), key=lambda n: int(n.split("_")[1]))
    names = [n for n in ("full", "limr", "rand", *draws, "linear", "passrate") if (out / n / "ckpt").is_dir()]
    files = {n: out / "data" / "pool.json" if n == "full" else out / "select" / (f"{METHODS[n]}.json" if n in METHODS
             else f"{n}.json") for n in names}  # fmt: skip
    return {n: len(read_json(f)) for n, f in files.items()}


def report_only(args, cfg: dict) -> int:
    """--report_only: report.md / report.json again from a finished --out (after a change to mini/report.py)."""
    single = len(args.seeds) == 1
    seed_dirs = {seed: args.out if single else args.out / f"seed{seed}" for seed in args.seeds}
    facts, times = {}, {}
    for seed, folder in seed_dirs.items():
        facts[seed] = seed_facts(folder)
        times[seed] = json.loads((folder / "timings.json").read_text())["seconds"]
    questions = trained_runs(next(iter(seed_dirs.values())))
    draws = sum(name.startswith("rand") for name in questions)
    write_report(args.out, cfg, args.size, seed_dirs, facts, times, questions, draws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
