"""verl's prompt dataset: the parquet its `RLHFDataset` reads, written from a prompt file (the paper's format).

    python -m limr.verl_data outputs/lim/limr.json               # writes outputs/lim/limr.parquet beside it
    python -m limr.verl_data data/validation.json --split eval

`data/prepare.py` writes the twins of math8k.json, limr.json and validation.json; this command makes one for any
other prompt file (lim_selection.py's output) and is what `BACKEND=verl` training runs when the twin is missing.
One row per prompt, laid out as verl's own examples/data_preprocess/math_dataset.py lays out MATH (verl 0.9):

    data_source   "limr/<source>": never verl's "math" or "aime*", which route its default scorer to math_dapo
                  (verl/utils/reward_score/__init__.py, default_compute_score); with no reward function
                  configured verl then refuses the row instead of grading it with another reward
    prompt        [system, user]: the paper's system prompt as a message, rendered with the model's chat template
    ability       "math"
    reward_model  {"ground_truth": the gold answer, "style": "rule"}
    extra_info    {"split": "train" | "eval", "index": row number, "prompt_id": our id}: verl hands this dict to
                  the reward function (train/verl_reward.py), which returns the id so the rollout dumps carry it
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from limr.dataset import SPLITS, load_prompts, twin_path
from limr.jsonio import DataError, atomic_write
from limr.paper import SYSTEM_PROMPT

DATA_SOURCE_PREFIX = "limr/"
ABILITY = "math"


def data_source(source: str) -> str:
    return DATA_SOURCE_PREFIX + (source or "unknown")


def to_verl_row(item: dict, index: int, split: str = "train", system_prompt: str = SYSTEM_PROMPT) -> dict:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return {
        "data_source": data_source(item.get("source", "")),
        "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": item["prompt"]}],
        "ability": ABILITY,
        "reward_model": {"ground_truth": item["answer"], "style": "rule"},
        "extra_info": {"split": split, "index": index, "prompt_id": str(item["id"])},
    }


def verl_path(prompt_json: str | os.PathLike) -> Path:
    """`X.json` -> `X.parquet`: where the verl twin of a prompt file lives."""
    return twin_path(prompt_json, ".parquet")


def write_verl_parquet(path: str | os.PathLike, items: Iterable[dict], split: str = "train") -> None:
    """Write the rows atomically (inside `limr.jsonio.all_or_nothing` too): a failed write leaves no file."""
    import pyarrow as pa  # imported here: only this writer needs it
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([to_verl_row(it, i, split) for i, it in enumerate(items)])
    with atomic_write(path, "wb") as f:
        pq.write_table(table, f)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prompts", type=Path, help="a prompt file X.json (the paper's format); writes X.parquet")
    p.add_argument("--split", choices=SPLITS, default="train", help="eval: validation rows")
    args = p.parse_args(argv)
    try:
        out = verl_path(args.prompts)
        items = load_prompts(args.prompts)
        write_verl_parquet(out, items, args.split)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(items)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
