"""The paper fork's step files: a folder of step_{k}.json, one per training step, each the json.dump(..., indent=4)
of [{"prompt", "response", "reward", "response_length"}]; samples name their prompt by its text.

A 2.5 GB run is mostly responses: msgspec types each file as a list of (prompt, reward) and skips the rest without
building it. A file it refuses, or one that is not UTF-8 (msgspec checks only the fields it keeps), goes through
json.load, which reads it as before or names what is wrong.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np
from tqdm import tqdm

from limr.history import History
from limr.jsonio import DataError, is_number, is_utf8, read_json
from limr.rollout_log import FINITE, EpochTally

# defstruct, not a class body: string annotations would not resolve for a module run under runpy
StepSample = msgspec.defstruct("StepSample", [("prompt", str), ("reward", FINITE)], gc=False)
PROMPT_REWARD = attrgetter("prompt", "reward")
_DECODE = msgspec.json.Decoder(list[StepSample]).decode
WORKERS, FILES_PER_WORKER = 2, 8  # decoding processes (each holds one file's samples) and the least files for one


def scan_step_files(folder: Path, by_text: dict, steps_per_epoch: int, num_epochs: int) -> History:
    """Tally step_1.json .. step_{K*steps}.json, one file at a time; samples join prompts by stripped text."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    if not any(folder.glob("step_*.json")):
        raise DataError(f"{folder}: no step_{{k}}.json files (pass a folder of the fork's step files or a .jsonl log)")
    need = steps_per_epoch * num_epochs
    for step in range(1, need + 1):
        if not (folder / f"step_{step}.json").is_file():
            raise DataError(
                f"{folder / f'step_{step}.json'} is missing: {num_epochs} epochs x {steps_per_epoch} steps need "
                f"step_1.json .. step_{need}.json (set --max_epochs / --steps_per_epoch to the run)"
            )
    pids, epochs, oks, counts, unknown = [], [], [], [], set()  # one entry per (step, prompt, reward)
    paths = [folder / f"step_{step}.json" for step in range(1, need + 1)]
    bar = tqdm(total=need, desc=f"reading {folder.name}/step_*.json", unit="file", disable=None)
    for step, samples in enumerate(_each_file(paths), 1):
        bar.update()
        texts, rewards = zip(*samples, strict=True) if samples else ((), ())
        ids = list(map(by_text.get, map(str.strip, texts)))
        unknown.update(text.strip() for text, pid in zip(texts, ids, strict=True) if pid is None)
        pids += ids
        epochs.append(np.full(len(ids), (step - 1) // steps_per_epoch))
        oks.append(np.array(rewards) == 1)
        counts.append(np.fromiter(samples.values(), np.int64, len(samples)))
    bar.close()
    if unknown:
        first = min(unknown)[:80]
        raise DataError(f"{folder}: {len(unknown)} prompt texts are not in the prompt file (first: {first!r})")
    n = np.concatenate(counts)
    tally = EpochTally.of(pids, pids, np.concatenate(epochs), np.concatenate(oks), n, num_epochs)
    return History("step files", tally, None, int(n.sum()), 0, steps_per_epoch)


def _each_file(paths: list[Path]) -> Iterator[Counter]:
    """Each file's Counter, in order. Decoding is CPU-bound and msgspec holds the GIL, so where two cores are free
    two worker processes decode while this one joins (a handful of files stays here). They are forked, inheriting
    the decoder, and run only _step_samples, which takes no lock another thread (tqdm's monitor) could hold."""
    workers = min(WORKERS, len(os.sched_getaffinity(0)), len(paths) // FILES_PER_WORKER)
    if workers < 2:
        yield from map(_step_samples, paths)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield from pool.map(_step_samples, paths)
    finally:  # a bad file stops the reading: the files not yet decoded are dropped
        pool.shutdown(cancel_futures=True)


def _step_samples(path: Path, decode=_DECODE) -> Counter:
    """Counter of (prompt, reward) in one step file, decoded from its pages in the page cache (mmap: no copy of
    15 MB; an empty file cannot be mapped and goes to json.load like any file msgspec refuses)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if np.frombuffer(data, np.uint8).max() >= 0x80 and not is_utf8(data[:]):  # ASCII as json.dump writes
                raise ValueError
            return Counter(map(PROMPT_REWARD, decode(data)))  # counted in C
    except (msgspec.DecodeError, ValueError, RecursionError):  # msgspec's own depth limit raises RecursionError
        return _strict_step_samples(path)


def _strict_step_samples(path: Path) -> Counter:
    """json.load of one step file: what it reads, or the exact error."""
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of samples, got {type(items).__name__}")
    pairs = Counter()
    for n, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("prompt"), str):
            raise DataError(f"{path}: item {n} has no 'prompt' string")
        if not is_number(it.get("reward")):
            raise DataError(f"{path}: item {n}: 'reward' must be a number, got {it.get('reward')!r}")
        pairs[it["prompt"], it["reward"]] += 1
    return pairs
