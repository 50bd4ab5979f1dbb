"""lim_selection.py on verl's rollout dumps (limr/verl_dumps.py): a folder of {step}.jsonl scores exactly as the same
samples in our rollout log, joined by prompt_id or by the prompt text inside a chat template, in both of verl's loops'
shapes. The dumps are written by verl's own code (RayPPOTrainer._log_rollout_data, the legacy loop, and
PPOTrainer._log_rollout_data, the v1 loop, with a tiny tokenizer made here) where verl imports; the other tests
write them with write_dump, checked byte for byte against verl's _write_generations when verl imports."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from limr.jsonio import write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def load_lim():
    spec = importlib.util.spec_from_file_location("lim_selection_for_verl", ROOT / "lim_selection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


lim = load_lim()

# one prompt inside another ("Find x." in "Find x. Then find y."): an input holding the longer one is the longer one's
TEXTS = ["Find x.", "Find x. Then find y.", "What is $2+2$?", "Compute \\frac{1}{2} + é.", "Solve $x^2=4$ for x > 0."]


def make_run(seed=0, prompts=12, batch=4, epochs=3, n=4) -> tuple[list[dict], list[tuple[int, str, float]]]:
    """A prompt file and a made-up first run: each epoch the prompts are shuffled and cut into full batches (verl's
    loader: drop_last), n samples a prompt; rewards 1 / -0.5 / -1 with a chance that moves with the epoch."""
    rng = random.Random(seed)
    texts = TEXTS + [f"Problem {i}: how many {i}-digit numbers are there?" for i in range(prompts - len(TEXTS))]
    items = [{"id": f"p{i}", "prompt": t, "answer": str(i), "source": "test"} for i, t in enumerate(texts)]
    ease = {it["id"]: rng.random() for it in items}
    samples, step = [], 0
    for epoch in range(epochs):
        order = rng.sample(items, len(items))
        for b in range(len(items) // batch):
            step += 1
            for it in order[b * batch : (b + 1) * batch]:
                p = min(1.0, ease[it["id"]] * (epoch + 1) / epochs)
                samples += [(step, it["id"], 1.0 if rng.random() < p else rng.choice([-0.5, -1.0])) for _ in range(n)]
    return items, samples


def chat_input(prompt: str) -> str:
    """What verl's dump says for a chat prompt: the template decoded with skip_special_tokens=True (role words stay)."""
    return f"system\n{SYSTEM}\nuser\n{prompt}\nassistant\n"


def write_dump(folder: Path, step: int, rows: list[dict]) -> None:
    """verl's _write_generations (verl/trainer/ppo/ray_trainer.py and v1/trainer_base.py, 0.9): keys input, output,
    gts, score, step, then the extra keys, one json.dumps(..., ensure_ascii=False) line per response."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{step}.jsonl", "w") as f:
        for row in rows:
            entry = {k: row[k] for k in ("input", "output", "gts", "score")} | {"step": step}
            entry |= {k: v for k, v in row.items() if k not in entry}
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def write_dumps(folder: Path, items: list[dict], samples, with_id: bool, wrap=chat_input) -> None:
    by_id = {it["id"]: it for it in items}
    steps = {}
    for step, pid, reward in samples:
        row = {"input": wrap(by_id[pid]["prompt"]), "output": "so \\boxed{1}", "gts": by_id[pid]["answer"]}
        row |= {"score": reward} | ({"acc": reward == 1, "prompt_id": pid} if with_id else {"uid": f"{pid}-{step}"})
        steps.setdefault(step, []).append(row)
    for step, rows in steps.items():
        write_dump(folder, step, rows)


def write_log(path: Path, samples, steps_per_epoch: int) -> None:
    """The same samples as our rollout log's lines."""
    rows = [{"step": s, "epoch": (s - 1) // steps_per_epoch + 1, "id": pid, "reward": r, "correct": r == 1}
            for s, pid, r in samples]  # fmt: skip
    write_jsonl(path, rows)


def select(tmp_path: Path, name: str, source: Path, prompts: Path, *extra) -> tuple[dict, dict, str]:
    """lim_selection.py in a child process: (scores by id, report, stderr)."""
    out = tmp_path / f"out-{name}" / "x.json"
    out.parent.mkdir()
    cmd = [sys.executable, str(ROOT / "lim_selection.py"), "--train_samples_path", str(source),
           "--original_prompts_path", str(prompts), "--output_path", str(out), "--no_plots", *map(str, extra)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)} | _env())
    assert done.returncode == 0, done.stderr
    scores = {row["id"]: row["score"] for row in json.loads(out.with_name("x.scores.json").read_text())}
    return scores, json.loads(out.with_name("x.report.json").read_text()), done.stderr


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture
def run(tmp_path):
    items, samples = make_run()
    write_json(tmp_path / "prompts.json", items)
    write_log(tmp_path / "rollouts.jsonl", samples, 3)
    return tmp_path, items, samples


def assert_same_scores(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys() and len(ours) > 5
    assert all(abs(ours[k] - theirs[k]) <= 1e-9 for k in ours), (ours, theirs)


@pytest.mark.parametrize("with_id", [True, False], ids=["legacy-with-prompt_id", "v1-text-only"])
def test_dumps_score_as_the_same_samples_in_our_log(run, with_id):
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, with_id)
    log_scores, _, _ = select(d, "log", d / "rollouts.jsonl", d / "prompts.json", "--max_epochs", 3)
    dump_scores, report, err = select(d, "dumps", d / "dumps", d / "prompts.json", "--max_epochs", 3,
                                      "--train_batch_size", 4)  # fmt: skip
    assert_same_scores(log_scores, dump_scores)
    assert report["format"] == ("verl dumps by prompt id" if with_id else "verl dumps")
    assert report["steps_per_epoch"] == 3 and report["params"]["train_batch_size"] == 4  # 12 prompts // 4
    assert report["samples"] == len(samples) and "lines_not_joined" not in report and "warning" not in err


def test_any_template_and_steps_per_epoch_flag(run):
    """The text is found whatever wraps it (here a plain-text template with the question mid-sentence)."""
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, False, wrap=lambda p: f"Question: {p}\nThink, then answer. Answer:")
    log_scores, _, _ = select(d, "log", d / "rollouts.jsonl", d / "prompts.json", "--max_epochs", 3)
    dump_scores, report, _ = select(d, "dumps", d / "dumps", d / "prompts.json", "--max_epochs", 3,
                                    "--steps_per_epoch", 3)  # fmt: skip
    assert_same_scores(log_scores, dump_scores)
    assert "train_batch_size" not in report["params"]


def test_unmatched_ambiguous_and_wrong_answer_lines_are_counted_not_guessed(run):
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, False)
    log_scores, _, _ = select(d, "log", d / "rollouts.jsonl", d / "prompts.json", "--max_epochs", 3)
    extra = [
        {"input": chat_input("A question nobody asked."), "output": "", "gts": "1", "score": 1.0},
        {"input": chat_input("What is $2+2$? and Solve $x^2=4$ for x > 0."), "output": "", "gts": "2", "score": 1.0},
        {"input": chat_input("What is $2+2$?"), "output": "", "gts": "not its answer", "score": 1.0},
    ]
    with open(d / "dumps" / "1.jsonl", "a") as f:  # verl's own layout, appended: the rest of step 1 is unchanged
        for row in extra:
            f.write(json.dumps(row | {"step": 1}, ensure_ascii=False) + "\n")
    dump_scores, report, err = select(d, "dumps", d / "dumps", d / "prompts.json", "--max_epochs", 3,
                                      "--train_batch_size", 4)  # fmt: skip
    assert_same_scores(log_scores, dump_scores)  # the three lines changed nothing
    assert report["lines_not_joined"] == {
        "input holds no prompt of the prompt file": 1,
        "input holds more than one prompt of the prompt file": 1,
        "ground truth (gts) differs from the prompt file's answer": 1,
    }
    assert err.count("warning:") == 3 and "A question nobody asked." in err


def test_a_filtered_log_is_warned_about(tmp_path):
    """Every prompt's samples disagree in every step: what a DAPO-style run dumps after dynamic sampling."""
    items, _ = make_run()
    write_json(tmp_path / "prompts.json", items)
    samples = [(s, it["id"], r) for s in range(1, 7) for it in items[(s - 1) % 3 * 4 :][:4] for r in (1.0, -1.0)]
    write_dumps(tmp_path / "dumps", items, samples, False)
    _, _, err = select(tmp_path, "o", tmp_path / "dumps", tmp_path / "prompts.json", "--max_epochs", 2,
                       "--steps_per_epoch", 3)  # fmt: skip
    assert "every prompt's samples disagree" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: (d / "2.jsonl").unlink(), "2.jsonl is missing"),
        (lambda d: (d / "step_1.json").write_text("[]"), "both the fork's step_{k}.json and verl's {k}.jsonl"),
        (lambda d: (d / "1.jsonl").write_text('{"input": "x", "score": 1, "step": 5}\n'), "'step' is 5"),
        (lambda d: (d / "1.jsonl").write_text('{"input": "x", "score": "1", "step": 1}\n'), "'score' must be"),
        (lambda d: (d / "1.jsonl").write_text("{not json\n"), "1.jsonl, line 1: not JSON"),
    ],
)
def test_bad_dumps_fail_with_one_clear_line(run, change, message):
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, False)
    change(d / "dumps")
    argv = ["--train_samples_path", d / "dumps", "--original_prompts_path", d / "prompts.json", "--no_plots",
            "--max_epochs", 3, "--steps_per_epoch", 3, "--output_path", d / "o" / "x.json"]  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "lim_selection.py"), *map(str, argv)], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)} | _env())  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr and not (d / "o").exists()


def test_mixed_prompt_ids_and_unknown_ids_are_errors(run):
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, True)
    rows = [json.loads(x) for x in (d / "dumps" / "2.jsonl").read_text().splitlines()]
    write_dump(d / "dumps", 2, [rows[0] | {"prompt_id": "nope"}, *rows[1:]])
    with pytest.raises(lim.DataError, match="prompt id 'nope' is not in the prompt file"):
        lim.read_training_samples(d / "dumps", items, 3, 3)
    write_dump(d / "dumps", 2, [{k: v for k, v in rows[0].items() if k != "prompt_id"}, *rows[1:]])
    with pytest.raises(lim.DataError, match="some lines carry a prompt_id and some do not"):
        lim.read_training_samples(d / "dumps", items, 3, 3)


# ---------------------------------------------------------------------------------------------------------------
# verl's own dump code, where verl imports on the CPU
# ---------------------------------------------------------------------------------------------------------------

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)  # Qwen2.5's layout: the role words are plain text, the markers special tokens


@pytest.fixture(scope="module")
def verl_parts():
    """verl's trainers and a tiny byte-level BPE tokenizer with a chat template, made here (nothing downloaded)."""
    pytest.importorskip("verl")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [*TEXTS, SYSTEM, "system user assistant Problem how many digit numbers are there the answer is"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                        chat_template=TEMPLATE, clean_up_tokenization_spaces=False)  # fmt: skip
    return {"DataProto": DataProto, "legacy": RayPPOTrainer, "v1": PPOTrainerSync, "v1_module": trainer_base,
            "tokenizer": tokenizer}  # fmt: skip


def verl_batches(parts, items, samples):
    """Per step: prompt ids (the chat template applied, as verl's RL dataset does), response ids, each response's
    reward on its last token, the parquet row's reward_model, and the prompt id."""
    import torch

    tok, by_id, steps = parts["tokenizer"], {it["id"]: it for it in items}, {}
    for step, pid, reward in samples:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": by_id[pid]["prompt"]}]
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        response = tok("the answer is there")["input_ids"] + [tok.eos_token_id]  # one length: reward on the last
        steps.setdefault(step, []).append((torch.tensor(prompt), torch.tensor(response), reward, pid))
    return steps


def left_padded(rows, pad):
    import torch

    width = max(len(r) for r in rows)
    return torch.stack([torch.cat([torch.full((width - len(r),), pad), r]) for r in rows])


def dump_legacy(parts, folder: Path, steps: dict, with_id: bool) -> None:
    """RayPPOTrainer._log_rollout_data on a DataProto shaped as the legacy loop's batch after the reward."""
    import numpy as np
    import torch

    trainer = parts["legacy"].__new__(parts["legacy"])  # no Ray, no workers: only what the dump reads
    trainer.tokenizer, pad = parts["tokenizer"], parts["tokenizer"].pad_token_id
    trainer._init_dump_executor()
    for step, rows in steps.items():
        trainer.global_steps = step
        responses = torch.stack([r for _, r, _, _ in rows])  # the same length here: the reward on the last token
        scores = torch.zeros(responses.shape)
        scores[:, -1] = torch.tensor([reward for _, _, reward, _ in rows])
        batch = parts["DataProto"].from_dict(
            tensors={"prompts": left_padded([p for p, _, _, _ in rows], pad), "responses": responses,
                     "token_level_scores": scores},
            non_tensors={"reward_model": np.array([{"ground_truth": _answer(parts, p), "style": "rule"}
                                                   for p, _, _, _ in rows], dtype=object)},
        )  # fmt: skip
        extra = {"acc": np.array([reward == 1 for _, _, reward, _ in rows])}
        extra |= {"prompt_id": [pid for _, _, _, pid in rows]} if with_id else {}
        trainer._log_rollout_data(batch, extra, {}, str(folder))
    trainer._shutdown_dump_executor()


def _answer(parts, prompt_ids) -> str:
    return parts["answers"][parts["tokenizer"].decode(prompt_ids, skip_special_tokens=True)]


def dump_v1(parts, folder: Path, steps: dict, monkeypatch) -> None:
    """PPOTrainer._log_rollout_data (v1) with TransferQueue's kv_batch_get answered from the made-up batch."""
    import types

    import numpy as np
    import torch

    trainer = parts["v1"].__new__(parts["v1"])
    trainer.tokenizer = parts["tokenizer"]
    trainer._init_dump_executor()
    for step, rows in steps.items():
        trainer.global_steps = step
        prompt_uid = {pid: str(uuid.uuid4()) for _, _, _, pid in rows}  # random per prompt and step, as in v1
        seen: dict[str, int] = {}
        keys = []
        for _, _, _, pid in rows:
            keys.append(f"{prompt_uid[pid]}_{seen.get(pid, 0)}_0")  # {sample}_{rollout}_{output}
            seen[pid] = seen.get(pid, 0) + 1
        rm_scores = torch.zeros(len(rows), rows[0][1].shape[0])
        rm_scores[:, -1] = torch.tensor([reward for _, _, reward, _ in rows])

        def kv_batch_get(keys, partition_id, select_fields, rows=rows, rm_scores=rm_scores):
            return {
                "uid": np.array([k.split("_")[0] for k in keys], dtype=object),
                "prompts": torch.nested.nested_tensor([p for p, _, _, _ in rows]),
                "responses": torch.nested.nested_tensor([r for _, r, _, _ in rows]),
                "rm_scores": rm_scores,
                "reward_model": np.array([{"ground_truth": _answer(parts, p)} for p, _, _, _ in rows], dtype=object),
            }

        monkeypatch.setattr(parts["v1_module"].tq, "kv_batch_get", kv_batch_get)
        trainer._log_rollout_data(types.SimpleNamespace(keys=keys, partition_id="train"), {}, str(folder))
    trainer._shutdown_dump_executor()


@pytest.mark.parametrize("loop", ["legacy-with-prompt_id", "legacy", "v1"])
def test_dumps_written_by_verl_score_as_our_log(run, verl_parts, loop, monkeypatch):
    d, items, samples = run
    verl_parts["answers"] = {chat_input(it["prompt"]): it["answer"] for it in items}  # (the decode is exact)
    steps = verl_batches(verl_parts, items, samples)
    if loop == "v1":
        dump_v1(verl_parts, d / "dumps", steps, monkeypatch)
    else:
        dump_legacy(verl_parts, d / "dumps", steps, with_id=loop == "legacy-with-prompt_id")
    first = json.loads((d / "dumps" / "1.jsonl").read_text().splitlines()[0])
    expected_keys = {"legacy-with-prompt_id": ["acc", "prompt_id"], "legacy": ["acc"], "v1": ["uid"]}[loop]
    assert list(first) == ["input", "output", "gts", "score", "step", *expected_keys]
    assert first["input"].startswith(f"system\n{SYSTEM}\nuser\n") and first["input"].endswith("\nassistant\n")
    log_scores, _, _ = select(d, "log", d / "rollouts.jsonl", d / "prompts.json", "--max_epochs", 3)
    dump_scores, report, err = select(d, "dumps", d / "dumps", d / "prompts.json", "--max_epochs", 3,
                                      "--train_batch_size", 4)  # fmt: skip
    assert_same_scores(log_scores, dump_scores)
    assert report["samples"] == len(samples) and "lines_not_joined" not in report, err
    assert report["format"] == ("verl dumps by prompt id" if loop == "legacy-with-prompt_id" else "verl dumps")


def test_write_dump_is_what_verl_writes(tmp_path, verl_parts):
    """The dumps the other tests write are byte for byte verl's _write_generations' (both loops')."""
    rows = [{"input": 'a "q" é\n', "output": "r\\", "gts": "1", "score": -0.5, "acc": False, "prompt_id": "p0"},
            {"input": "b", "output": "", "gts": None, "score": 1.0, "acc": True, "prompt_id": "p1"}]  # fmt: skip
    write_dump(tmp_path / "ours", 7, rows)
    columns = {arg: [r[k] for r in rows] for arg, k in (("inputs", "input"), ("outputs", "output"), ("gts", "gts"),
                                                         ("scores", "score"))}  # fmt: skip
    extra = {k: [r[k] for r in rows] for k in ("acc", "prompt_id")}
    for loop in ("legacy", "v1"):
        verl_parts[loop]._write_generations(**columns, reward_extra_infos_dict=extra, dump_path=str(tmp_path / loop),
                                            global_steps=7)  # fmt: skip
        assert (tmp_path / loop / "7.jsonl").read_bytes() == (tmp_path / "ours" / "7.jsonl").read_bytes()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--train_samples_path", "{d}/rollouts.jsonl", "--train_batch_size", 4],
            "--train_batch_size goes with a folder",
        ),
        (
            ["--train_samples_path", "{d}/dumps", "--train_batch_size", 4, "--steps_per_epoch", 3],
            "without --steps_per",
        ),
        (["--train_samples_path", "{d}/dumps", "--train_batch_size", 13], "more than the 12 prompts"),
        (["--train_samples_path", "{d}/dumps", "--train_batch_size", 0], "must be >= 1"),
    ],
)
def test_train_batch_size_misuse_is_an_error(run, extra, message):
    d, items, samples = run
    write_dumps(d / "dumps", items, samples, False)
    argv = [*(str(x).format(d=d) for x in extra), "--original_prompts_path", str(d / "prompts.json"), "--no_plots",
            "--max_epochs", "3", "--output_path", str(d / "o" / "x.json")]  # fmt: skip
    done = subprocess.run([sys.executable, str(ROOT / "lim_selection.py"), *argv], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT)} | _env())  # fmt: skip
    assert done.returncode == 2 and message in done.stderr and not (d / "o").exists(), done.stderr
