"""The paper's reward for OpenRLHF's file mode: no server, and no rollout log.

    python -m openrlhf.cli.train_ppo_ray ... --reward.remote_url train/reward_func.py

OpenRLHF loads this file in every vLLM engine and calls `reward_func(queries, prompts, labels)` (one sample per
call, from a thread). It returns what train/reward_server.py answers over HTTP, computed the same way (the same
request core, limr/request.py: response = query minus prompt, label -> id and gold answer), and grades in worker
processes with the same hard per-response limit. It writes NO rollout log, so LIM cannot select from a run trained
this way: use the reward server for the first (full-data) run, and this file where only the reward matters.

OpenRLHF 0.11.2 loads the file by path (SingleTurnAgentExecutor in openrlhf/utils/agent.py: spec_from_file_location
and exec_module), so its imports resolve on the engine's own sys.path: the `limr` package must be installed on
every node, as requirements.txt does (`-e .[plot]`, step 3 of its install).

Settings come from the environment of the engine processes (set them in Ray's runtime env), read at first call:
  LIMR_GRADER          default | limr (the release's reward, bug for bug)   [default]
  LIMR_REWARD_WORKERS  grading processes per vLLM engine                    [4]
  LIMR_WORKER_MEMORY_MB  memory each grading process may add (limr/pool.py) [512]
"""

import argparse
import atexit
import os
import threading

from limr.cli import int_in
from limr.pool import GradingPool
from limr.request import make_sample, reply

WORKERS = 4  # per vLLM engine; grading one response takes ~1 ms, so a few keep up with generation


_pool: GradingPool | None = None
_pool_lock = threading.Lock()


def _grading_pool() -> GradingPool:
    """One pool per process, started on the first call (OpenRLHF calls reward_func from several threads)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            try:
                workers = int_in(1, 4096)(os.environ.get("LIMR_REWARD_WORKERS", str(WORKERS)))
            except argparse.ArgumentTypeError as e:  # -1 or "four" would start no worker and hang every call
                raise ValueError(f"LIMR_REWARD_WORKERS: {e}") from None
            _pool = GradingPool(workers=workers, mode=os.environ.get("LIMR_GRADER", "default"))
            atexit.register(_pool.close)
    return _pool


def reward_func(queries: list[str], prompts: list[str], labels: list[str]) -> dict:
    samples = [
        make_sample(q, p, label, f"labels[{i}]: ")
        for i, (q, p, label) in enumerate(zip(queries, prompts, labels, strict=True))
    ]
    graded = _grading_pool().map([(s.response, s.answer) for s in samples])
    return reply(graded)
