"""The repo's reward server (train/reward_server.py) as a child process on loopback, for one training run.

The miniature loop rewards every sample through the same server a cluster run uses, so the rollout log LIM reads
is written by the same code, numbered into steps the same way (--samples_per_step, --samples_per_epoch).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "train" / "reward_server.py"
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/get_reward")
START_S = 60


@contextlib.contextmanager
def reward_server(rollout_log: Path, samples_per_step: int, samples_per_epoch: int, workers: int = 2):
    """Start the server (a free port; its output in <rollout_log>.server.log), wait until healthy, yield the URL
    of /get_reward, and stop it with SIGTERM (which flushes the logs) on the way out."""
    rollout_log.parent.mkdir(parents=True, exist_ok=True)
    output = rollout_log.with_suffix(".server.log")
    cmd = [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", "0", "--rollout_log", str(rollout_log),
           "--samples_per_step", str(samples_per_step), "--samples_per_epoch", str(samples_per_epoch),
           "--workers", str(workers)]  # fmt: skip
    with open(output, "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        url = wait_until_serving(proc, output)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the reward server exited with {proc.returncode}; its output: {output}")


def wait_until_serving(proc: subprocess.Popen, output: Path) -> str:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the reward server did not start: {output.read_text()[-2000:]}")
        m = URL_RE.search(output.read_text())
        if m:
            base = f"http://127.0.0.1:{m.group(1)}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        return base + "/get_reward"
        time.sleep(0.1)
    raise RuntimeError(f"the reward server was not healthy within {START_S} s: {output}")


def post_samples(url: str, queries: list[str], prompts: list[str], labels: list[str]) -> dict:
    """One request in OpenRLHF's remote reward format; the reply's rewards are in sample order."""
    body = json.dumps({"query": queries, "prompts": prompts, "labels": labels}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=180) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"the reward server answered {e.code}: {e.read().decode(errors='replace')[:500]}") from None
