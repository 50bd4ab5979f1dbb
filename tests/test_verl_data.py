"""verl's parquet (limr/verl_data.py) read by verl's own dataset code, and what data/prepare.py writes of it."""

import subprocess
import sys
from pathlib import Path

import pytest

from limr.jsonio import read_json, write_json
from limr.paper import SYSTEM_PROMPT
from limr.verl_data import verl_path, write_verl_parquet

ROOT = Path(__file__).resolve().parents[1]
ITEMS = [
    {"id": "p0", "prompt": "What is $1+1$?", "answer": "2", "source": "math"},
    {"id": "p1", "prompt": "Find $x$ if $x^2=9$, $x>0$.", "answer": "3", "source": "aime"},
]


def verl_dataset(path: Path, tmp_path: Path):
    """verl 0.9's RLHFDataset (verl/utils/dataset/rl_dataset.py) over our file, with a local tokenizer that has
    Qwen's special tokens and chat template; the overlong-prompt filter renders every prompt with it."""
    pytest.importorskip("verl")
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from mini.policy import build_tokenizer

    config = OmegaConf.create(
        {
            "cache_dir": str(tmp_path / "cache"),
            "prompt_key": "prompt",
            "max_prompt_length": 1024,
            "filter_overlong_prompts": True,
            "filter_overlong_prompts_workers": 1,
            "truncation": "error",
            "return_raw_chat": True,
        }
    )
    tokenizer = build_tokenizer()
    return RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=config), tokenizer


@pytest.mark.parametrize("split", ["train", "eval"])
def test_verl_reads_our_rows(tmp_path, split):
    path = tmp_path / "prompts.parquet"
    write_verl_parquet(path, ITEMS, split)
    dataset, tokenizer = verl_dataset(path, tmp_path)
    assert len(dataset) == 2  # neither prompt filtered out
    for i, item in enumerate(ITEMS):
        row = dataset[i]
        assert row["raw_prompt"] == [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": item["prompt"]},
        ]
        text = tokenizer.apply_chat_template(row["raw_prompt"], tokenize=False, add_generation_prompt=True)
        assert text.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>")
        assert f"<|im_start|>user\n{item['prompt']}<|im_end|>" in text
        assert row["data_source"] == f"limr/{item['source']}"
        assert row["ability"] == "math"
        assert row["reward_model"] == {"ground_truth": item["answer"], "style": "rule"}
        assert row["extra_info"] == {"split": split, "index": i, "prompt_id": item["id"]}
        assert row["index"] == i  # verl takes its sample index from extra_info


def test_our_data_source_never_reaches_verls_default_scorers():
    """ "math" and "aime*" would be graded by verl's math_dapo (an "Answer:" line): ours are refused instead, so a
    run that forgot our reward function stops at the first sample."""
    pytest.importorskip("verl")
    from verl.utils.reward_score import default_compute_score

    for item in ITEMS:
        with pytest.raises(NotImplementedError):
            default_compute_score(f"limr/{item['source']}", "\\boxed{2}", item["answer"])
    assert default_compute_score("math", "Answer: 2", "2")["score"] == 1.0  # what the prefix avoids


def run_cli(*args):
    cmd = [sys.executable, "-m", "limr.verl_data", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_writes_the_twin_of_a_prompt_file(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    write_json(tmp_path / "limr.json", ITEMS)
    proc = run_cli(tmp_path / "limr.json")
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(verl_path(tmp_path / "limr.json")).to_pylist()
    assert [r["extra_info"]["prompt_id"] for r in rows] == ["p0", "p1"]
    assert {r["extra_info"]["split"] for r in rows} == {"train"}


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("limr.jsonl", ITEMS, "a prompt file must end in .json"),
        ("limr.json", [{"id": "a", "prompt": "1+1"}], "limr.json: row 0 has no field 'answer'"),
        ("missing.json", None, "missing.json: no such file"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_no_output(tmp_path, name, content, message):
    if content is not None:
        write_json(tmp_path / name, content)
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli(tmp_path / name)
    assert proc.returncode == 2
    assert proc.stderr.count("error:") == 1 and message in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no parquet, no temporary file
    if content is not None:
        assert read_json(tmp_path / name) == content  # the input untouched
