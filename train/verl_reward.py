"""The paper's reward for verl 0.9: a custom reward function, and a reward manager that hands it the end of turn.

    python -m verl.trainer.main_ppo ... \\
        reward.custom_reward_function.path=train/verl_reward.py reward.custom_reward_function.name=compute_score \\
        reward.reward_manager.source=importlib reward.reward_manager.name=LimrRewardManager \\
        reward.reward_manager.module.path=train/verl_reward.py \\
        +reward.custom_reward_function.reward_kwargs.grader=default

(`BACKEND=verl bash scripts/train_math.8k.sh` passes all of it: scripts/lib/verl.sh.) verl calls
`compute_score(data_source, solution_str, ground_truth, extra_info)` once per response, from a thread of its reward
loop worker (verl/experimental/reward_loop/reward_manager/naive.py, NaiveRewardManager.run_single), with the row's
`extra_info` from our parquet (limr/verl_data.py) and `reward_kwargs` merged in (verl/trainer/ppo/reward.py,
get_custom_reward_fn). It returns {"score", "acc", "prompt_id"}: verl trains on `score`, and its legacy loop
(trainer.use_v1=False) writes the other keys into every line of the rollout dumps, so they carry our prompt id.

The reward is limr/reward.py's, graded in worker processes with the hard per-response limit (limr/pool.py), as the
reward server grades (train/reward_server.py): 1 correct, -0.5 wrong, -1 format error. One rule needs more than
verl's `solution_str`: a response cut off by the length limit, with no end-of-turn marker, is a format error, but
NaiveRewardManager decodes with `skip_special_tokens=True`, which deletes the markers. LimrRewardManager (the
naive manager plus one step) also decodes the response with its special tokens and passes that text in
`extra_info`, so the rule applies as on the server. Under verl's plain naive manager the markers are gone and
every response is taken as complete (a cut-off response is graded on its text): `compute_score` says so once.

Settings (reward_kwargs, set in the command above): grader = default | limr (the release's reward, bug for bug),
workers = grading processes per reward loop worker (4).
"""

from __future__ import annotations

import logging
import threading

from limr.pool import GradingPool
from limr.reward import EOS_MARKERS

WORKERS = 4  # grading processes per reward worker process; one response takes ~1 ms
RAW_RESPONSE_KEY = "limr_raw_response"  # extra_info key: the response decoded with its special tokens

logger = logging.getLogger(__name__)
_pools: dict[tuple[str, int], GradingPool] = {}
_lock = threading.Lock()
_warned_plain_manager = False


def _grading_pool(grader: str, workers: int) -> GradingPool:
    """One pool per (grader, workers) and process, started on first use (verl calls from several threads)."""
    with _lock:
        key = (grader, workers)
        if key not in _pools:
            _pools[key] = GradingPool(workers=workers, mode=grader)
        return _pools[key]


def _response_text(solution_str: str, extra_info: dict) -> str:
    """The text limr.reward grades: with its end-of-turn marker when LimrRewardManager supplied it."""
    global _warned_plain_manager
    raw = extra_info.get(RAW_RESPONSE_KEY)
    if raw is not None:
        return str(raw)
    if not _warned_plain_manager:
        _warned_plain_manager = True
        logger.warning(
            "verl_reward: no %s in extra_info (verl's plain reward manager): every response is taken as "
            "complete, so a response cut off by the length limit is not the paper's format error; use "
            "reward.reward_manager.name=LimrRewardManager (train/verl_reward.py)",
            RAW_RESPONSE_KEY,
        )
    return solution_str + EOS_MARKERS[0]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict | None = None,
    grader: str = "default",
    workers: int = WORKERS,
    **_verl_kwargs,
) -> dict:
    """The paper's reward of one response; `**_verl_kwargs` takes what verl adds for other rewards."""
    extra_info = extra_info or {}
    graded = _grading_pool(grader, int(workers)).submit(_response_text(solution_str, extra_info), ground_truth)
    result = graded.result()
    return {"score": result.reward, "acc": float(result.correct), "prompt_id": str(extra_info.get("prompt_id", ""))}


def _manager_class():
    """LimrRewardManager, defined when verl imports (verl loads this file by path, where it is installed)."""
    import numpy as np
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    class LimrRewardManager(NaiveRewardManager):
        """NaiveRewardManager that also passes the response decoded with its special tokens (the end of turn)."""

        async def run_single(self, data):
            item = data[-1]  # the valid response tokens, as NaiveRewardManager.run_single finds them
            response_ids = item.batch["responses"]
            valid = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
            raw = await self.loop.run_in_executor(
                None, lambda: self.tokenizer.decode(response_ids[:valid], skip_special_tokens=False)
            )
            # verl repeats a prompt's row n times sharing one extra_info dict: give this sample its own copy
            infos = data.non_tensor_batch.setdefault("extra_info", np.array([{}] * len(data), dtype=object))
            infos[len(data) - 1] = {**(infos[len(data) - 1] or {}), RAW_RESPONSE_KEY: raw}
            return await super().run_single(data)

    return LimrRewardManager


try:
    LimrRewardManager = _manager_class()
except ImportError:  # verl absent: compute_score still works (tests, other engines)
    pass
