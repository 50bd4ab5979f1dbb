"""python mini/run.py --size tiny [--out outputs/mini] [--seed 0]

The whole LIMR loop in miniature on a CPU, with the cluster path's reward code, rollout log, `lim_selection.py`
and answer grading:
  1. tasks: a seeded synthetic arithmetic family (mini/tasks.py): training pool, held-out test set, warm-up set;
  2. warm-up: a tiny Qwen2-architecture policy with a local character tokenizer, supervised on worked solutions;
  3. stage 1: GRPO on the whole pool for several epochs, every sample in the rollout log (mini/rl.py);
  4. selection: `lim_selection.py` picks LIM, LINEAR and RAND subsets of one size from that log;
  5. stage 2: GRPO again from the warm-up checkpoint on FULL, LIM, RAND and LINEAR with equal compute
     (same steps, prompts per step and samples per prompt), evaluating the held-out set along the way;
  6. report: a Table 2-like table (run, #questions, held-out accuracy) and accuracy-vs-step curves (PNG).
Sizes: tiny (CI, minutes), default (under 10 minutes on 2 cores), gpu (larger, untested). Deterministic for a seed
on one machine (fixed thread count).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {
    # pool must be a multiple of batch (epochs = whole steps); subset = pool // 4 as the paper's ~1/6
    "tiny": dict(pool=64, test=64, warm=2000, sft_steps=600, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                 heads=4, batch=16, group=8, epochs=4, stage2_steps=12, eval_every=4, subset=16,
                 max_new=40, temperature=1.0, rl_lr=5e-4),
    "default": dict(pool=256, test=200, warm=4000, sft_steps=1500, sft_batch=32, sft_lr=3e-3, hidden=64, layers=2,
                    heads=4, batch=32, group=8, epochs=6, stage2_steps=32, eval_every=8, subset=64,
                    max_new=40, temperature=1.0, rl_lr=5e-4),
    "gpu": dict(pool=1024, test=500, warm=20000, sft_steps=2000, sft_batch=64, sft_lr=2e-3, hidden=256, layers=4,
                heads=8, batch=64, group=8, epochs=10, stage2_steps=160, eval_every=16, subset=256,
                max_new=40, temperature=1.0, rl_lr=3e-4),
}  # fmt: skip
METHODS = ("lim", "linear", "rand")
RUNS = ("full", "lim", "rand", "linear")


def banner(i: int, title: str) -> None:
    print(f"\n{'=' * 100}\n== stage {i}/6: {title}\n{'=' * 100}", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=SIZES, default="default")
    p.add_argument("--out", type=Path, default=Path("outputs/mini"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="grading processes for evaluation")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(2)
    from limr.dataset import write_prompt_files
    from limr.pool import GradingPool
    from mini.policy import build_model, build_tokenizer, n_params, save, sft
    from mini.rl import evaluate, grpo, write_jsonl
    from mini.tasks import make_splits

    cfg, out = SIZES[args.size], args.out
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t_all = time.time()

    banner(1, "tasks")
    t0 = time.time()
    pool_items, test, warm = make_splits(cfg["pool"], cfg["test"], cfg["warm"], args.seed)
    data = out / "data"
    data.mkdir(exist_ok=True)
    keys = ("id", "prompt", "answer", "source")
    pool_json = data / "pool.json"
    write_prompt_files(pool_json, [{k: it[k] for k in keys} for it in pool_items])
    write_jsonl(
        data / "mini.jsonl", [{"id": it["id"], "question": it["prompt"], "answer": it["answer"]} for it in test]
    )
    print(f"pool {len(pool_items)}, held-out {len(test)}, warm-up {len(warm)} problems -> {data}")
    times["tasks"] = time.time() - t0

    banner(2, "warm-up (supervised)")
    t0 = time.time()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, cfg["hidden"], cfg["layers"], cfg["heads"], args.seed)
    print(f"Qwen2ForCausalLM, {n_params(model):,} parameters, vocabulary {len(tokenizer)}")
    losses = sft(model, tokenizer, warm, cfg["sft_steps"], cfg["sft_batch"], cfg["sft_lr"], args.seed)
    warm_path = save(model, tokenizer, out / "warmup")
    print(f"final SFT loss {losses[-1]:.3f} -> {warm_path}")
    times["warm-up"] = time.time() - t0

    results = {}
    with GradingPool(args.workers, check_format=False) as gpool:

        def evaluator(run: str):
            curve = results.setdefault(run, {})
            (out / "eval" / run).mkdir(parents=True, exist_ok=True)

            def on_eval(step: int, path: Path) -> None:
                res = evaluate(path, tokenizer, test, gpool, cfg["max_new"])
                write_jsonl(out / "eval" / run / f"step{step}.jsonl", res["rows"])
                curve[step] = res["accuracy"]

            return on_eval

        banner(3, "stage 1: GRPO on the whole pool (the rollout log LIM reads)")
        t0 = time.time()
        spe = -(-cfg["pool"] // cfg["batch"])
        steps1 = spe * cfg["epochs"]
        stats1 = grpo(model, tokenizer, pool_items, cfg, steps1, out / "rollouts" / "stage1.jsonl",
                      out / "stage1" / "ckpt", args.seed, "stage 1 GRPO", evaluator("stage1"))  # fmt: skip
        by_epoch = {}
        for s in stats1:
            by_epoch.setdefault(s["epoch"], []).append(s["acc"])
        print("train accuracy per epoch:", " ".join(f"{sum(v) / len(v):.3f}" for v in by_epoch.values()))
        times["stage 1"] = time.time() - t0

        banner(4, "selection: lim_selection.py (LIM, LINEAR, RAND)")
        t0 = time.time()
        subsets = {"full": pool_items}
        by_id = {it["id"]: it for it in pool_items}
        for method in METHODS:
            cmd = [sys.executable, str(ROOT / "lim_selection.py"), "--train_samples_path",
                   str(out / "rollouts" / "stage1.jsonl"), "--original_prompts_path", str(pool_json), "--output_path",
                   str(out / "select" / f"{method}.json"), "--steps_per_epoch", str(spe), "--max_epochs",
                   str(cfg["epochs"]), "--method", method, "--num_samples", str(cfg["subset"]),
                   "--seed", str(args.seed)]  # fmt: skip
            print("$", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)
            chosen = json.loads((out / "select" / f"{method}.json").read_text())
            subsets[method] = [by_id[c["id"]] for c in chosen]
            print(f"{method}: {len(subsets[method])} prompts")
        times["selection"] = time.time() - t0

        banner(5, "stage 2: GRPO from the warm-up on FULL / LIM / RAND / LINEAR, equal compute")
        t0 = time.time()
        from transformers import AutoModelForCausalLM

        for run in RUNS:
            model = AutoModelForCausalLM.from_pretrained(warm_path)
            grpo(model, tokenizer, subsets[run], cfg, cfg["stage2_steps"], out / "rollouts" / f"{run}.jsonl",
                 out / run / "ckpt", args.seed, f"stage 2 {run}", evaluator(run))  # fmt: skip
            print(f"{run}: held-out accuracy by step {results[run]}")
        times["stage 2"] = time.time() - t0

    banner(6, "report")
    times["total"] = time.time() - t_all
    report(out, cfg, subsets, results, times, args)
    return 0


def report(out: Path, cfg: dict, subsets: dict, results: dict, times: dict, args) -> None:
    """Table 2-like markdown + JSON, and the accuracy-vs-step curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = cfg["stage2_steps"]
    lines = [
        f"| run | #questions | held-out accuracy (step {last}) | best along the curve |",
        "|---|---|---|---|",
        f"| warm-up (base) | - | {100 * results['full'][0]:.1f} | - |",
    ]
    for run in RUNS:
        curve = results[run]
        lines.append(
            f"| {run.upper()} | {len(subsets[run])} | {100 * curve[last]:.1f} | {100 * max(curve.values()):.1f} |"
        )
    lines.append(
        f"| (stage 1: FULL, {len(results['stage1']) and max(results['stage1'])} steps) | {len(subsets['full'])} "
        f"| {100 * results['stage1'][max(results['stage1'])]:.1f} | {100 * max(results['stage1'].values()):.1f} |"
    )
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    summary = {
        "size": args.size,
        "seed": args.seed,
        "config": cfg,
        "questions": {run: len(subsets[run]) for run in RUNS},
        "accuracy_by_step": {run: {str(k): v for k, v in results[run].items()} for run in results},
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in RUNS:
        steps = sorted(results[run])
        ax.plot(
            steps, [100 * results[run][s] for s in steps], marker="o", label=f"{run.upper()} ({len(subsets[run])})"
        )
    ax.set_xlabel("training step (stage 2)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"mini LIMR, size {args.size}, seed {args.seed}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    print("seconds:", summary["seconds"])
    print(f"-> {out / 'table.md'}, {out / 'results.json'}, {out / 'curves.png'}")


if __name__ == "__main__":
    sys.exit(main())
