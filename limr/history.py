"""A first run's history, the input LIM scores: one reader per format, all returning a History.

A History holds, per prompt and epoch, the samples with reward 1 and the samples (an EpochTally), or for an
accuracy file, which has only the ratios, the accuracies themselves; `accuracy()` gives the same
{prompt_id: [accuracy per epoch, None where not sampled]} from both. The formats and their readers:
  our rollout log (.jsonl)         scan_rollout_log here, on limr/rollout_log.py's count_samples
  the paper fork's step files      limr/step_files.py   (a folder of step_{k}.json)
  verl's rollout dumps             limr/verl_dumps.py   (a folder of {k}.jsonl, trainer.rollout_data_dir)
  One-Shot-RLVR's accuracy files   load_accuracy here   ({prompt_id: [accuracy per epoch]})
  saved scores files               limr/dataset.py's load_scores (scores, not a history)
read_training_samples tells the first three apart by what the path holds, never by a flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path

from limr.dataset import ids_by_text
from limr.jsonio import DataError, is_number, read_json
from limr.paper import STEPS_PER_EPOCH
from limr.rollout_log import EpochTally, count_samples, steps_per_epoch_of

STEP_FILE = re.compile(r"step_[0-9]+\.json")  # the fork's names
VERL_DUMP = re.compile(r"[0-9]+\.jsonl")  # verl's: {global_step}.jsonl


@dataclass
class History:
    """Per prompt and epoch, what a run did, and how it was read (for the report)."""

    format: str  # "rollout log", "step files", "verl dumps", "verl dumps by prompt id", "accuracy history"
    tally: EpochTally | None = None  # samples read: successes and samples per prompt and epoch
    accuracies: dict[str, list[float | None]] | None = None  # an accuracy file: the ratios only
    samples: int | None = None  # every training sample read
    after_max_epochs: int | None = None  # of them, in epochs past --max_epochs (histories are cut to it)
    steps_per_epoch: int | None = None
    eval_rows_skipped: int = 0
    torn_last_line: int | None = None
    unjoined: dict[str, int] = field(default_factory=dict)  # verl dumps: lines left out, by reason (reported)

    def accuracy(self) -> dict[str, list[float | None]]:
        return self.accuracies if self.tally is None else self.tally.accuracy()

    def counts(self) -> dict:
        """What the report says about the reading, in the order it has always said it."""
        keys = ("samples", "after_max_epochs", "eval_rows_skipped", "torn_last_line", "steps_per_epoch")
        out = {k: getattr(self, k) for k in keys} if self.tally is not None else {}
        return out | ({"lines_not_joined": self.unjoined} if self.unjoined else {})


def check_steps(path: Path, steps: set, steps_per_epoch: int, num_epochs: int, labelled: bool) -> None:
    """Every step 1 .. num_epochs x steps_per_epoch must have samples: a gap means the flags do not fit the run."""
    need = steps_per_epoch * num_epochs
    missing = next((s for s in range(1, need + 1) if s not in steps), None)
    if missing is not None:
        flags = "--max_epochs" if labelled else "--max_epochs / --steps_per_epoch"
        raise DataError(
            f"{path}: no sample for step {missing}, but {num_epochs} epochs x {steps_per_epoch} steps need steps "
            f"1-{need}; the log reaches step {max(steps)} (set {flags} to the run)"
        )


def scan_rollout_log(path: Path, known: set | None, steps_per_epoch: int | None, num_epochs: int) -> History:
    """Tally our rollout log (read by limr.rollout_log). Its lines carry their epoch: a given steps_per_epoch must
    agree; an older log without it takes steps_per_epoch (default: the paper's), with a warning."""
    counts = count_samples(path)
    steps, epochs, pids, oks, n = counts.columns()
    if not len(steps):
        raise DataError(f"{path}: no training samples")
    unknown = set() if known is None else set(pids) - known
    if unknown:
        raise DataError(f"{path}: {len(unknown)} prompt ids are not in the prompt file (first: {min(unknown)!r})")
    per_epoch = steps_per_epoch_of(path, steps, epochs, steps_per_epoch, STEPS_PER_EPOCH)
    check_steps(path, set(steps.tolist()), per_epoch, num_epochs, labelled=None not in epochs)
    epoch = (steps - 1) // per_epoch  # each line's own epoch - 1, where it has one (checked above)
    kept = epoch < num_epochs
    tally = EpochTally.of(pids, list(compress(pids, kept)), epoch[kept], oks[kept], n[kept], num_epochs)
    return History("rollout log", tally, None, int(n.sum()), int(n[~kept].sum()), per_epoch, counts.eval_rows,
                   counts.torn_last_line)  # fmt: skip


def load_accuracy(path: str) -> History:
    """{prompt_id: [accuracy per epoch]} (One-Shot-RLVR's acc_step_500.json); null marks an epoch not sampled."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{prompt_id: [accuracy per epoch, ...]}}")
    for pid, hist in data.items():
        if not isinstance(hist, list):
            raise DataError(f"{path}: the history of {pid!r} is not a list")
        for x in hist:
            if x is not None and not (is_number(x) and 0 <= x <= 1):
                raise DataError(f"{path}: the history of {pid!r} holds {x!r}, not an accuracy in [0, 1]")
    return History("accuracy history", accuracies=data)


def folder_format(folder: Path) -> str:
    """ "step files" or "verl dumps", from the file names (a folder holding both, or neither, is refused)."""
    names = [p.name for p in folder.iterdir()]
    fork, verl = any(map(STEP_FILE.fullmatch, names)), any(map(VERL_DUMP.fullmatch, names))
    if fork == verl:
        what = "both the fork's step_{k}.json and verl's {k}.jsonl" if fork else "no step_{k}.json or {k}.jsonl"
        raise DataError(
            f"{folder}: {what} files (pass a folder of the fork's step files, of verl's rollout dumps "
            "(trainer.rollout_data_dir), or a .jsonl log)"
        )
    return "step files" if fork else "verl dumps"


def read_training_samples(path: Path, prompts: list[dict] | None, steps_per_epoch: int | None, num_epochs: int,
                          warn=None) -> History:  # fmt: skip
    """--train_samples_path: our rollout log (a file), or a folder of the fork's step files or of verl's dumps."""
    from limr.step_files import scan_step_files
    from limr.verl_dumps import scan_verl_dumps

    if path.is_file():
        known = None if prompts is None else {it["id"] for it in prompts}
        return scan_rollout_log(path, known, steps_per_epoch, num_epochs)
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    kind = folder_format(path)
    if prompts is None:
        raise DataError(f"{kind} name prompts by text: pass --original_prompts_path")
    if kind == "step files":
        by_text = {text: ids[0] for text, ids in ids_by_text(prompts).items()}  # a text's samples: its first id
        return scan_step_files(path, by_text, steps_per_epoch or STEPS_PER_EPOCH, num_epochs)
    return scan_verl_dumps(path, prompts, steps_per_epoch or STEPS_PER_EPOCH, num_epochs)
