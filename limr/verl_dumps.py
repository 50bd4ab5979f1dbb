"""verl's rollout dumps: a folder of {step}.jsonl, one per training step, written when trainer.rollout_data_dir is set.

What verl writes (read in verl 0.9.0/0.9.1, verl/trainer/ppo/ray_trainer.py and verl/trainer/ppo/v1/trainer_base.py):
  - `_write_generations` (both loops, a static method run in a background thread by `_dump_generations`) opens
    os.path.join(dump_path, f"{global_steps}.jsonl") and writes one json.dumps(..., ensure_ascii=False) line per
    response: {"input", "output", "gts", "score", "step", **extra}, steps counted from 1.
  - the legacy loop (trainer.use_v1=False), RayPPOTrainer._log_rollout_data: input and output are
    tokenizer.batch_decode(..., skip_special_tokens=True) of the prompt and response ids (so a chat template's role
    words stay around the question), score is token_level_scores.sum(-1) (the reward before the KL penalty), gts is
    non_tensor_batch["reward_model"]["ground_truth"], and extra holds every list the reward function returned
    (reward_extra_infos_dict: ours returns "acc" and "prompt_id") and "request_id" where the batch has one.
  - the v1 loop (the default from 0.9), Trainer._log_rollout_data: the same input/output/gts, score is
    rm_scores.sum(dim=1), and extra is only "uid", the TransferQueue key {uuid4 per prompt and step}_{rollout}_{index}:
    no prompt id reaches the dump.
So lines join the prompt file by "prompt_id" where the dump has one, else by the prompt text found inside "input":
every prompt text (stripped) that occurs in it, less those that occur only inside a longer one that also does. An
input holding no prompt text, or two, is counted and reported, never guessed; so is a line whose "gts" differs from
the prompt file's answer. A sample is correct when its score is 1 (the paper's reward; verl's own math scorers give
1.0 for correct too). Epoch k holds steps (k-1)*S+1 .. k*S: verl's train loader drops each pass's partial batch
(drop_last=True), so S = floor(prompts / data.train_batch_size).
"""

from __future__ import annotations

import json
import mmap
from collections import Counter
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np
from tqdm import tqdm

from limr.dataset import ids_by_text, warn_stderr
from limr.history import History
from limr.jsonio import DataError, is_number
from limr.rollout_log import FINITE, EpochTally

NO_PROMPT, TWO_PROMPTS, OTHER_ANSWER = (
    "input holds no prompt of the prompt file",
    "input holds more than one prompt of the prompt file",
    "ground truth (gts) differs from the prompt file's answer",
)
KEY_CHARS = 32  # prompts are found by their first characters (fewer where a prompt is shorter), then compared whole


class DumpLine(msgspec.Struct, gc=False):
    """The fields LIM needs; output and the reward function's other keys are skipped, never built."""

    input: str
    score: FINITE
    step: int
    gts: str | None = None  # other JSON (a list, a number) goes through the strict reader
    prompt_id: str | None = None


LINE_KEY = attrgetter("step", "prompt_id", "input", "gts", "score")


class PromptFinder:
    """Which prompt of the prompt file an input holds, whatever template wraps it; each distinct input once."""

    def __init__(self, prompts: list[dict]):
        self.first_id = {text: ids[0] for text, ids in ids_by_text(prompts).items() if text}
        self.key_chars = min([KEY_CHARS, *map(len, self.first_id)])
        self.starting = {}
        for text in self.first_id:
            self.starting.setdefault(text[: self.key_chars], []).append(text)
        self.found: dict[str, str | None] = {}  # input -> prompt id, or the reason it has none

    def __call__(self, text: str) -> tuple[str | None, str | None]:
        """(prompt id, None) or (None, why not)."""
        if text not in self.found:
            texts = self._texts_in(text)
            self.found[text] = self.first_id[texts[0]] if len(texts) == 1 else (NO_PROMPT, TWO_PROMPTS)[bool(texts)]
        pid = self.found[text]
        return (None, pid) if pid in (NO_PROMPT, TWO_PROMPTS) else (pid, None)

    def _texts_in(self, s: str) -> list[str]:
        k, hits, starting = self.key_chars, [], self.starting.get
        for i in range(len(s) - k + 1):
            texts = starting(s[i : i + k])
            if texts:
                hits += [(i, i + len(t), t) for t in texts if s.startswith(t, i)]
        outer = [(a, b, t) for a, b, t in hits if not any(c <= a and b <= d and d - c > b - a for c, d, _ in hits)]
        return list(dict.fromkeys(t for _, _, t in outer))


def scan_verl_dumps(folder: Path, prompts: list[dict], steps_per_epoch: int, num_epochs: int,
                    warn=warn_stderr) -> History:  # fmt: skip
    """Tally 1.jsonl .. {K*steps}.jsonl, one file at a time, joined by prompt_id where present, else by text."""
    need = steps_per_epoch * num_epochs
    for step in range(1, need + 1):
        if not (folder / f"{step}.jsonl").is_file():
            raise DataError(
                f"{folder / f'{step}.jsonl'} is missing: {num_epochs} epochs x {steps_per_epoch} steps need "
                f"1.jsonl .. {need}.jsonl (set --max_epochs / --steps_per_epoch or --train_batch_size to the run)"
            )
    answer = {it["id"]: it["answer"].strip() for it in prompts}
    answers = {ids[0]: {answer[pid] for pid in ids} for ids in ids_by_text(prompts).values()}  # a text's, all ids'
    known, find = {it["id"] for it in prompts}, PromptFinder(prompts)
    by_id: bool | None = None  # decided by the first line: every line must then agree
    decode = msgspec.json.Decoder(DumpLine).decode_lines
    pids, epochs, oks, counts, unjoined, example = [], [], [], [], Counter(), {}
    groups = agreeing = 0  # (prompt, step) groups of 2+ samples, and those whose samples all agree
    for step in tqdm(range(1, need + 1), desc=f"reading {folder.name}/*.jsonl", unit="file", disable=None):
        path = folder / f"{step}.jsonl"
        lines = _dump_lines(path, step, decode)
        if by_id is None and lines:
            by_id = next(iter(lines))[0] is not None
        per_prompt: dict[str, list[int]] = {}  # this step's samples: [correct, total] per prompt
        for (pid, text, gts, score), n in lines.items():
            if (pid is not None) != by_id:
                raise DataError(f"{path}: some lines carry a prompt_id and some do not: cannot join them one way")
            if by_id and pid not in known:
                raise DataError(f"{path}: prompt id {pid!r} is not in the prompt file")
            why = None
            if not by_id:
                pid, why = find(text)
            if why is None and gts is not None and gts.strip() not in answers[pid]:
                why = OTHER_ANSWER
            if why is not None:
                unjoined[why] += n
                example.setdefault(why, f"{path.name}: {(text or pid)[-120:]!r}")
                continue
            tally = per_prompt.setdefault(pid, [0, 0])
            tally[0] += n * (score == 1)
            tally[1] += n
        for pid, (correct, total) in per_prompt.items():
            pids.append(pid)
            counts.append(total)
            oks.append(correct)
            epochs.append((step - 1) // steps_per_epoch)
            groups += total > 1
            agreeing += total > 1 and correct in (0, total)
    for why, n in unjoined.items():
        warn(f"{folder}: {n} lines left out: {why} (first: {example[why]})")
    if not pids:
        raise DataError(f"{folder}: no line joins a prompt of the prompt file ({dict(unjoined) or 'no lines'})")
    if groups and not agreeing:
        warn(
            f"{folder}: in every step, every prompt's samples disagree (some right, some wrong): a log "
            "written after filtering (DAPO's dynamic sampling drops the groups whose samples all agree), which "
            "biases each epoch's accuracy"
        )
    # one entry per (prompt, step) with its correct samples: EpochTally counts n * ok, so give it 0/1 rows
    total, correct, epoch = np.array(counts, np.int64), np.array(oks, np.int64), np.array(epochs, np.int64)
    cols = (pids + pids, np.concatenate([epoch, epoch]), np.repeat([True, False], len(pids)))
    tally = EpochTally.of(pids, cols[0], cols[1], cols[2], np.concatenate([correct, total - correct]), num_epochs)
    return History("verl dumps by prompt id" if by_id else "verl dumps", tally, None, int(total.sum()), 0,
                   steps_per_epoch, unjoined=dict(unjoined.most_common()))  # fmt: skip


def _dump_lines(path: Path, step: int, decode) -> Counter:
    """Counter of (prompt_id, input, gts, score) in one dump file; msgspec first, else the strict reader."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            lines = decode(data)
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValueError: an empty file cannot be mapped;
        return _strict_dump_lines(path, step)  # RecursionError: msgspec's own depth limit
    counted = Counter(map(LINE_KEY, lines))  # in C; the few distinct keys are then checked here
    if any(key[0] != step for key in counted):
        return _strict_dump_lines(path, step)  # names the line
    out = Counter()
    for (_, pid, text, gts, score), n in counted.items():
        out[pid, None if pid else text, gts, score] += n  # by id: the input is not needed
    return out


def _strict_dump_lines(path: Path, step: int) -> Counter:
    """json.loads line by line: what it reads, or the exact error with its line number."""
    out = Counter()
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise DataError(f"{path}, line {lineno}: not JSON ({e})") from None
                except RecursionError:
                    raise DataError(f"{path}, line {lineno}: JSON nested too deeply to read") from None
                _check_row(path, lineno, row, step)
                gts = row.get("gts")
                gts = gts if gts is None or isinstance(gts, str) else json.dumps(gts)
                pid = row.get("prompt_id")
                out[pid, None if pid else row["input"], gts, row["score"]] += 1
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 ({e})") from None
    return out


def _check_row(path: Path, lineno: int, row, step: int) -> None:
    where = f"{path}, line {lineno}"
    if not isinstance(row, dict) or not isinstance(row.get("input"), str):
        raise DataError(f"{where}: no 'input' string (is this a verl rollout dump?)")
    if not is_number(row.get("score")) or not np.isfinite(row["score"]):
        raise DataError(f"{where}: 'score' must be a finite number, got {row.get('score')!r}")
    if row.get("step") != step:
        raise DataError(f"{where}: 'step' is {row.get('step')!r}, but the file is step {step}")
    if row.get("prompt_id") is not None and not isinstance(row["prompt_id"], str):
        raise DataError(f"{where}: 'prompt_id' must be a string, got {row['prompt_id']!r}")
