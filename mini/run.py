"""python mini/run.py [--size tiny|default|gpu] [--out outputs/mini] [--seed 0] [--overwrite]

The whole LIMR loop in miniature, with the cluster path's own parts at every hand-off:
  1. tasks      a seeded synthetic arithmetic family (mini/tasks.py): training pool, held-out test set, warm-up set,
                written as data/prepare.py writes prompts (pool.json + its OpenRLHF .jsonl twin) and benchmarks;
  2. warm-up    a tiny Qwen2-architecture policy with a local character tokenizer, supervised on worked solutions;
  3. stage 1    GRPO (TRL's GRPOTrainer) on the whole pool for several epochs, every sample rewarded and logged by
                train/reward_server.py over loopback HTTP, as OpenRLHF's engines call it;
  4. selection  lim_selection.py on that rollout log: LIM, RAND and LINEAR of one size, the paper's share of the
                pool (1,389 / 8,523, in whole steps), or LIM at --lim_threshold and the others of its size;
  5. stage 2    GRPO again from the warm-up checkpoint on FULL, LIMR, RAND and LINEAR with equal compute (same
                steps, prompts per step and samples per prompt), checkpoints every few steps;
  6. eval       bash eval/eval.sh (transformers backend) on every checkpoint and on the warm-up model, held-out set;
  7. report     eval/summarize.py: a Table 2-like table and accuracy-vs-step curves (summary.md, curves.png).
Sizes: tiny (CI, a few minutes), default (under 10 minutes on 2 CPU cores), gpu (one GPU). Deterministic for a
seed on one machine.
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
    # pool, test: prompts; batch B prompts a step, group G samples a prompt; the pool and LIM's subset are whole steps
    "tiny": dict(pool=64, test=64, warm=4000, sft_steps=700, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                 heads=4, batch=16, group=8, epochs=4, stage2_steps=12, eval_every=4, max_new=40,
                 temperature=1.0, rl_lr=1e-4, device="cpu"),
    "default": dict(pool=256, test=200, warm=4000, sft_steps=800, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                    heads=4, batch=32, group=8, epochs=6, stage2_steps=32, eval_every=8, max_new=40,
                    temperature=1.0, rl_lr=1e-4, device="cpu"),
    "gpu": dict(pool=1024, test=500, warm=20000, sft_steps=2000, sft_batch=64, sft_lr=2e-3, hidden=256, layers=4,
                heads=8, batch=64, group=8, epochs=10, stage2_steps=160, eval_every=16, max_new=40,
                temperature=1.0, rl_lr=5e-5, device="cuda"),
}  # fmt: skip
SHARE = LIMR_SIZE / MATH8K_SIZE  # the paper kept 16% of its pool
RUNS = {"full": None, "limr": "lim", "rand": "rand", "linear": "linear"}  # stage-2 run -> lim_selection.py method
BENCH = "mini"  # the held-out set's name in the evaluation harness


def banner(i: int, title: str) -> None:
    print(f"\n{'=' * 100}\n== {i}/7 {title}\n{'=' * 100}", flush=True)


def run(cmd: list[str]) -> None:
    """A repo entry point, as a user would run it (the same interpreter)."""
    print("$", " ".join(str(c) for c in cmd), flush=True)
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def write_tasks(out: Path, pool: list[dict], test: list[dict], cfg: dict) -> Path:
    """data/pool.json (+ pool.jsonl, OpenRLHF's input), data/mini.jsonl and its settings table for eval/evaluate.py."""
    from limr.dataset import write_prompt_files
    from limr.jsonio import write_json, write_jsonl

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_prompt_files(data / "pool.json", [{k: it[k] for k in ("id", "prompt", "answer", "source")} for it in pool])
    write_jsonl(
        data / f"{BENCH}.jsonl", [{"id": t["id"], "question": t["prompt"], "answer": t["answer"]} for t in test]
    )
    greedy = {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": cfg["max_new"]}
    write_json(data / "benchmarks.json", {"_source": "mini/run.py: the held-out set, greedy", BENCH: greedy})
    return data


def epoch_accuracy(log: Path, steps_per_epoch: int) -> list[float]:
    from limr.jsonio import iter_jsonl

    by_epoch: dict[int, list[bool]] = {}
    for _, row in iter_jsonl(log):
        by_epoch.setdefault((row["step"] - 1) // steps_per_epoch, []).append(row["correct"])
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=SIZES, default="default")
    p.add_argument("--out", type=Path, default=Path("outputs/mini"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's --out (else it must be empty or absent)"
    )
    p.add_argument("--workers", type=int, default=2, help="grading processes of the reward server and evaluation")
    p.add_argument("--lim_threshold", type=float,
                   help="LIM keeps s >= this (the paper: 0.6) instead of the paper's share of the pool")  # fmt: skip
    return p.parse_args(argv)


def subset_size(pool: int, batch: int) -> int:
    """The paper's share of the pool, rounded to whole steps of `batch` prompts (at least one)."""
    return max(1, round(pool * SHARE / batch)) * batch


def main(argv=None) -> int:
    args = parse_args(argv)
    out, cfg = args.out, SIZES[args.size]
    import torch

    if cfg["device"] == "cpu":
        torch.set_num_threads(2)  # one thread count, one result: the default size's times are for 2 cores
    elif not torch.cuda.is_available():
        print(f"error: --size {args.size} needs a GPU (torch sees none); use --size default", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            print(f"error: {out} is not empty: pass --overwrite to replace it, or another --out", file=sys.stderr)
            return 2
        if not (out / "data" / "pool.json").is_file():  # --overwrite deletes only what an earlier run wrote
            print(f"error: {out} is not a mini/run.py output folder: not deleting it", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    from transformers import AutoModelForCausalLM

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
    pool, test, warm = make_splits(cfg["pool"], cfg["test"], cfg["warm"], args.seed)
    data = write_tasks(out, pool, test, cfg)
    print(f"pool {len(pool)}, held-out {len(test)}, warm-up {len(warm)} problems -> {data}")
    timed("tasks", t0)

    banner(2, "warm-up: supervised on worked solutions")
    t0 = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg["hidden"], cfg["layers"], cfg["heads"], args.seed)
    print(f"Qwen2ForCausalLM, {n_params(model):,} parameters, vocabulary {len(tokenizer)}")
    losses = sft(model, tokenizer, warm, cfg["sft_steps"], cfg["sft_batch"], cfg["sft_lr"], args.seed, cfg["device"])
    warm_path = save(model.cpu(), tokenizer, out / "warmup")
    print(f"final loss {losses[-1]:.3f} -> {warm_path}")
    timed("warm-up", t0)

    banner(3, "stage 1: GRPO on the whole pool; the reward server writes the rollout log LIM reads")
    t0 = time.time()
    spe = len(pool) // B
    stage1_log = out / "rollouts" / "stage1.jsonl"
    with reward_server(stage1_log, B * G, len(pool) * G, args.workers) as url:
        train(model, tokenizer, pool, cfg, spe * cfg["epochs"], url, out / "stage1" / "ckpt", args.seed, None)
    accs = epoch_accuracy(stage1_log, spe)
    print("training accuracy by epoch:", " ".join(f"{a:.3f}" for a in accs))
    timed("stage 1", t0)

    share = (
        f"LIM >= {args.lim_threshold}" if args.lim_threshold is not None else f"{subset_size(len(pool), B)} prompts"
    )
    banner(4, f"selection: lim_selection.py, LIM, RAND and LINEAR of one size ({share})")
    t0 = time.time()
    by_id = {it["id"]: it for it in pool}
    subsets = {"full": pool}
    common = ["--train_samples_path", stage1_log, "--original_prompts_path", data / "pool.json",
              "--steps_per_epoch", spe, "--max_epochs", cfg["epochs"], "--seed", args.seed]  # fmt: skip
    for name, method in RUNS.items():
        if method is None:
            continue
        if method == "lim" and args.lim_threshold is not None:
            size = ["--similarity_threshold", args.lim_threshold]
        else:
            size = ["--num_samples", len(subsets["limr"]) if "limr" in subsets else subset_size(len(pool), B)]
        run([sys.executable, ROOT / "lim_selection.py", *common, "--method", method, *size,
             "--output_path", out / "select" / f"{method}.json"])  # fmt: skip
        chosen = json.loads((out / "select" / f"{method}.json").read_text())
        subsets[name] = [by_id[c["id"]] for c in chosen]
        print(f"{name}: {len(subsets[name])} prompts")
    timed("selection", t0)

    banner(5, "stage 2: GRPO from the warm-up on FULL / LIMR / RAND / LINEAR with equal compute")
    t0 = time.time()
    for name, items in subsets.items():
        if len(items) < B:
            print(f"{name}: {len(items)} prompts cannot fill one step of {B}: skipped", flush=True)
            continue
        print(f"-- {name}: {len(items)} prompts, {cfg['stage2_steps']} steps of {B} x {G} samples", flush=True)
        model = AutoModelForCausalLM.from_pretrained(warm_path)
        with reward_server(out / "rollouts" / f"{name}.jsonl", B * G, (len(items) // B) * B * G, args.workers) as url:
            train(model, tokenizer, items, cfg, cfg["stage2_steps"], url, out / name / "ckpt", args.seed,
                  cfg["eval_every"])  # fmt: skip
    timed("stage 2", t0)

    banner(6, "evaluation: eval/eval.sh on the held-out set, every checkpoint")
    t0 = time.time()
    harness = ["bash", ROOT / "eval" / "eval.sh", "--data_dir", data, "--settings", data / "benchmarks.json",
               "--out", out / "eval", "--seed", args.seed, "--workers", args.workers]  # fmt: skip
    run([*harness, "--model", warm_path, "--name", "warmup"])
    trained = [name for name in subsets if (out / name / "ckpt").is_dir()]
    for name in trained:
        run([*harness, "--run_path", out / name / "ckpt", "--step", "all"])
    timed("evaluation", t0)

    banner(7, "report: eval/summarize.py")
    questions = ",".join(f"{name}={len(subsets[name])}" for name in trained)
    run([sys.executable, ROOT / "eval" / "summarize.py", "--eval_dir", out / "eval", "--runs",
         ",".join(["warmup", *trained]), "--questions", questions, "--out", out])  # fmt: skip
    times["total"] = round(time.time() - started, 1)
    (out / "timings.json").write_text(json.dumps({"size": args.size, "seed": args.seed, "seconds": times}) + "\n")
    print(f"seconds: {times}\n-> {out / 'summary.md'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
