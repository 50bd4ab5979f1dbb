"""End-to-end test of the miniature LIMR loop (`python mini/run.py --size tiny`): every stage's artefacts exist and
are well formed (not the accuracies). Takes about 2 minutes on 2 CPU cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mini")
    subprocess.run([sys.executable, str(ROOT / "mini" / "run.py"), "--size", "tiny", "--out", str(out)], check=True,
                   cwd=ROOT)  # fmt: skip
    return out


def test_mini_tiny_end_to_end(run_dir):
    sys.path.insert(0, str(ROOT))
    from mini.run import RUNS, SIZES

    cfg = SIZES["tiny"]
    B, G = cfg["batch"], cfg["group"]
    spe = cfg["pool"] // B

    # stage 1: tasks
    pool = json.loads((run_dir / "data" / "pool.json").read_text())
    assert len(pool) == cfg["pool"] and all(set(it) == {"id", "prompt", "answer", "source"} for it in pool)
    test = read_jsonl(run_dir / "data" / "mini.jsonl")
    assert len(test) == cfg["test"] and {t["question"] for t in test}.isdisjoint(it["prompt"] for it in pool)

    # stage 2: warm-up checkpoint loads like a cluster one
    assert (run_dir / "warmup" / "config.json").is_file() and (run_dir / "warmup" / "tokenizer.json").is_file()

    # stage 3: rollout log, one line per sample, steps numbered by (B x G) samples
    rows = read_jsonl(run_dir / "rollouts" / "stage1.jsonl")
    assert len(rows) == cfg["epochs"] * cfg["pool"] * G
    assert [r["step"] for r in rows] == [i // (B * G) + 1 for i in range(len(rows))]
    assert max(r["step"] for r in rows) == spe * cfg["epochs"]
    assert list(rows[0])[:5] == ["step", "id", "reward", "correct", "response_length"]
    ids = {it["id"] for it in pool}
    for epoch in range(cfg["epochs"]):  # each epoch is one pass over the pool, G samples per prompt
        chunk = rows[epoch * cfg["pool"] * G : (epoch + 1) * cfg["pool"] * G]
        counts = {}
        for r in chunk:
            counts[r["id"]] = counts.get(r["id"], 0) + 1
        assert set(counts) == ids and set(counts.values()) == {G}
    assert all(r["reward"] in (1.0, -0.5, -1.0) for r in rows)

    # stage 4: selections of equal size, scores and reports
    sizes = set()
    for method in ("lim", "linear", "rand"):
        chosen = json.loads((run_dir / "select" / f"{method}.json").read_text())
        assert {c["id"] for c in chosen} <= ids and len({c["id"] for c in chosen}) == len(chosen)
        sizes.add(len(chosen))
        assert (run_dir / "select" / f"{method}.report.json").is_file()
    assert sizes == {cfg["subset"]}
    scores = json.loads((run_dir / "select" / "lim.scores.json").read_text())
    assert len(scores) == cfg["pool"] and all("score" in s for s in scores)

    # stage 5: equal compute, evaluation at every checkpoint
    eval_steps = sorted(
        {0, *range(cfg["eval_every"], cfg["stage2_steps"] + 1, cfg["eval_every"]), cfg["stage2_steps"]}
    )
    for run in RUNS:
        log = read_jsonl(run_dir / "rollouts" / f"{run}.jsonl")
        assert len(log) == cfg["stage2_steps"] * B * G
        assert [r["step"] for r in log] == [i // (B * G) + 1 for i in range(len(log))]
        for step in eval_steps:
            assert (run_dir / run / "ckpt" / f"global_step{step}_hf" / "config.json").is_file()
            ev = read_jsonl(run_dir / "eval" / run / f"step{step}.jsonl")
            assert len(ev) == cfg["test"] and all(isinstance(e["correct"], bool) for e in ev)

    # stage 6: table, results, curves
    results = json.loads((run_dir / "results.json").read_text())
    for run in RUNS:
        curve = results["accuracy_by_step"][run]
        assert sorted(map(int, curve)) == eval_steps and all(0 <= v <= 1 for v in curve.values())
        assert results["questions"][run] == (cfg["pool"] if run == "full" else cfg["subset"])
    table = (run_dir / "table.md").read_text()
    assert all(f"| {run.upper()} |" in table for run in RUNS)
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
