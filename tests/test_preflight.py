"""scripts/preflight.sh: one line per check, every check whatever fails, exit 1 on any FAIL.

The whole script runs here as a user would run it on this GPU-less machine. Each check is then driven to its
failure and its success: the GPU-facing probes (nvidia-smi, nvcc, the cluster's Python) are replaced by small
programs on PATH or CUDA_HOME, at their boundary; memory, disk, ports, the HTTP probe and the files are real.
"""

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import preflight  # noqa: E402

from limr.checksums import write_checksums  # noqa: E402
from limr.dataset import write_prompt_files  # noqa: E402
from limr.jsonio import all_or_nothing  # noqa: E402

CHECK_LINE = re.compile(r"^(ok  |FAIL) [^:]+: ")


def program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def gpu_path(tmp_path, monkeypatch):
    """Put a stand-in nvidia-smi first on PATH: prog(body) sets what it prints."""

    def prog(body: str):
        program(tmp_path / "bin" / "nvidia-smi", body)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")

    return prog


def test_the_script_on_this_machine(tmp_path):
    """No GPU here: the driver check fails with its fix, memory and disk are still checked, every line is a check."""
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"), REWARD_PORT=str(free_port()))
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "preflight.sh")], env=env, capture_output=True, text=True, timeout=600
    )  # fmt: skip  (a hang guard; the run takes well under two minutes here)
    lines = r.stdout.splitlines()
    checks = [x for x in lines if CHECK_LINE.match(x)]
    assert r.returncode == 1 and len(checks) >= 8 and len(checks) == len(lines) - 1, r.stdout + r.stderr
    assert lines[-1].startswith("preflight: ") and "FAIL" in lines[-1]
    driver = next(x for x in checks if " NVIDIA driver:" in x)
    assert driver.startswith("FAIL") and "fix: install NVIDIA driver >= 580" in driver
    memory = next(x for x in checks if " CPU memory:" in x)
    assert "PRESET=paper needs 300 GB per node" in memory
    disk = next(x for x in checks if " disk:" in x)
    assert disk.startswith("FAIL") and "190 checkpoints x 15.2 GB" in disk  # SAVE_STEPS=1: every step + final
    assert all("fix: " in x for x in checks if x.startswith("FAIL"))


def test_a_bad_preset_is_one_error_line(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PRESET="cluster")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "preflight.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "PRESET must be" in r.stderr


@pytest.mark.parametrize(
    "printed, ok, message",
    [
        ("580.65.06", True, "580.65.06 (>= 580 for CUDA 13"),
        ("535.183.01", False, "535.183.01 is older than 580, which CUDA 13 needs; fix: install NVIDIA driver >= 580"),
        ("NVIDIA-SMI has failed", False, "nvidia-smi gave no driver version"),
    ],
)
def test_driver(gpu_path, printed, ok, message):
    gpu_path(f'echo "{printed}"\n')
    got, text = preflight.check_driver("13.0", 13)
    assert got == ok and message in text, text


def test_driver_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    got, text = preflight.check_driver(None, 13)
    assert not got and "nvidia-smi not found" in text and "fix: install NVIDIA driver >= 580" in text


@pytest.mark.parametrize(
    "mib, ok, message",
    [
        ([81559] * 8, True, "8 x 81559 MiB"),
        ([81559] * 4, False, "4 GPU(s)"),
        ([40960] * 8, False, "needs 8 of >= 80000"),
    ],
)
def test_gpus(gpu_path, mib, ok, message):
    gpu_path("".join(f"echo {m}\n" for m in mib))
    got, text = preflight.check_gpus(8, "node")
    assert got == ok and message in text and (ok or "fix: PRESET=node needs 8 GPU(s) of 80 GB" in text), text


@pytest.mark.parametrize("release, ok", [("13.2", True), ("13.0", True), ("12.8", False)])
def test_toolkit(tmp_path, monkeypatch, release, ok):
    program(tmp_path / "cuda" / "bin" / "nvcc", f'echo "Cuda compilation tools, release {release}, V{release}.1"\n')
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    got, text = preflight.check_toolkit("13.0", 13)
    assert got == ok and f"nvcc {release}" in text, text
    assert ok or "torch needs CUDA 13.x; fix: install a CUDA 13.x toolkit" in text


def test_no_toolkit(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "none"))
    got, text = preflight.check_toolkit("13.0", 13)
    assert not got and "no nvcc" in text and "set CUDA_HOME" in text


def test_cpu_adam_builds_with_the_launchs_environment(tmp_path, monkeypatch):
    """The cluster's Python is the boundary: one that records its environment and succeeds, one that fails."""
    monkeypatch.delenv("DS_SKIP_CUDA_CHECK", raising=False)
    good = program(tmp_path / "good", f'echo "$DS_SKIP_CUDA_CHECK" >{tmp_path}/env; echo built\n')
    got, text = preflight.check_cpu_adam(str(good), 60)
    assert got and "built and loaded" in text and (tmp_path / "env").read_text() == "1\n"
    bad = program(
        tmp_path / "bad", 'echo "deepspeed.ops.op_builder.builder.CUDAMismatchException: >- ..." >&2; exit 1\n'
    )
    got, text = preflight.check_cpu_adam(str(bad), 60)
    assert not got and "build failed: deepspeed.ops.op_builder.builder.CUDAMismatchException" in text
    got, text = preflight.check_cpu_adam(sys.executable, 120)  # the real thing: no deepspeed on this CPU machine
    assert not got and "No module named 'deepspeed'" in text and "fix: pip install -r requirements.txt" in text


def test_imports_at_the_pinned_versions():
    assert preflight.pins()["vllm"] == "0.29.0" and preflight.pins()["flash-attn"] == "2.8.3"
    got, text = preflight.check_import(sys.executable, "openrlhf", "openrlhf", "0.11.2")
    assert got and text.endswith("0.11.2")
    got, text = preflight.check_import(sys.executable, "openrlhf", "openrlhf", "0.11.3")
    assert not got and "version 0.11.2, requirements.txt pins 0.11.3" in text
    got, text = preflight.check_import(sys.executable, "flash-attn", "flash_attn", "2.8.3")
    assert not got and "No module named 'flash_attn'" in text


def test_memory(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       527999000 kB\nMemFree: 1 kB\n")  # 541 GB
    assert preflight.check_memory("node", meminfo)[0]
    meminfo.write_text("MemTotal:       263999000 kB\n")  # 270 GB: the 256 GB the docs used to plan
    got, text = preflight.check_memory("node", meminfo)
    assert not got and "270 GB, PRESET=node needs 400 GB per node; fix: use nodes with >= 400 GB" in text


def test_disk(tmp_path):
    got, text = preflight.check_disk(tmp_path / "not" / "yet", "smoke", 6, 3)  # 3 checkpoints of the 1.5B model
    assert got and f"at {tmp_path}" in text and "3 checkpoints x 3.1 GB" in text
    got, text = preflight.check_disk(tmp_path, "paper", 189, 1)
    assert not got and "190 checkpoints x 15.2 GB = 2888 GB needed" in text and "SAVE_STEPS=10" in text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_reward_server_is_asked_without_a_proxy(monkeypatch):
    """A real server on loopback, and http_proxy pointing nowhere: urllib's default opener would use it and fail."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        dead = f"http://127.0.0.1:{free_port()}"
        monkeypatch.setenv("http_proxy", dead)
        monkeypatch.setenv("HTTP_PROXY", dead)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        got, text = preflight.check_reward("127.0.0.1", "127.0.0.1", port, head=False)
        assert got and "answers 200 (asked without a proxy)" in text, text
        got, text = preflight.check_reward("127.0.0.1", "127.0.0.1", port, head=True)
        assert got  # the launcher's own server already up: the same answer
        import urllib.request

        with pytest.raises(OSError):  # what the launcher's probe did before (urlopen's opener): through the dead proxy
            urllib.request.build_opener().open(f"http://127.0.0.1:{port}/health", timeout=3)
    finally:
        server.shutdown()
        server.server_close()


def test_reward_port_taken_or_head_unknown():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers, and the server could not bind
        port = taken.getsockname()[1]
        got, text = preflight.check_reward("127.0.0.1", "127.0.0.1", port, head=True)
        assert not got and f"127.0.0.1:{port} is taken" in text and "set REWARD_PORT" in text
    got, text = preflight.check_reward("127.0.0.1", "127.0.0.1", free_port(), head=True)
    assert got and "is free for the launcher's server" in text
    got, text = preflight.check_reward("no-such-host.invalid", "0.0.0.0", 5000, head=False)
    assert not got and "does not resolve" in text and "set MASTER_ADDR" in text


def test_ray_ports(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        port = taken.getsockname()[1]
        got, text = preflight.check_ray_ports(True, "127.0.0.1", port)
        assert not got and f"taken: [{port}" in text and "ray stop" in text
        monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")  # a cluster the launcher joins: nothing to bind here
        got, text = preflight.check_ray_ports(True, "127.0.0.1", port)
        assert got and "RAY_ADDRESS=10.0.0.9:6379" in text
        monkeypatch.delenv("RAY_ADDRESS")
    with socket.socket() as head:
        head.bind(("127.0.0.1", 0))
        head.listen()
        got, text = preflight.check_ray_ports(False, "127.0.0.1", head.getsockname()[1])
        assert got and "the head's Ray answers" in text


def test_data(tmp_path):
    jsonl = write_prompt_files(tmp_path / "p.json", [{"id": "a", "prompt": "1+1?", "answer": "2"}])
    got, text = preflight.check_data(jsonl)
    assert got and "1 rows, sha256 " in text and "(not in a SHA256SUMS)" in text
    got, text = preflight.check_data(tmp_path / "p.json")  # the paper's format, not OpenRLHF's rows
    assert not got
    got, text = preflight.check_data(tmp_path / "missing.jsonl")
    assert not got and "not found; fix: python data/prepare.py" in text


def test_data_against_the_hashes_prepare_recorded(tmp_path):
    """data/prepare.py's SHA256SUMS (written in the same all-or-nothing as the files) is what the preflight checks:
    a file changed after it was written fails, with its fix; a file the manifest does not list only shows its hash."""
    rows = [{"id": str(i), "prompt": f"{i}+1?", "answer": str(i + 1)} for i in range(3)]
    with all_or_nothing():
        jsonl = write_prompt_files(tmp_path / "p.json", rows)
        write_checksums(tmp_path, ["p.json", "p.jsonl"])
    assert (tmp_path / "SHA256SUMS").read_text().splitlines()[1].endswith("  p.jsonl")
    got, text = preflight.check_data(jsonl)
    assert got and text.endswith(", as SHA256SUMS records"), text
    jsonl.write_text(jsonl.read_text().splitlines()[0] + "\n")  # half-copied: one row of three
    got, text = preflight.check_data(jsonl)
    assert not got and "changed since data/prepare.py wrote it" in text and "fix: python data/prepare.py" in text
    other = write_prompt_files(tmp_path / "mine.json", rows[:1])  # a selection of the user's own
    assert preflight.check_data(other)[0]


def test_wandb(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert preflight.check_wandb(sys.executable) == (True, "ok   wandb: off (no WANDB_API_KEY): tensorboard only")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    missing = program(tmp_path / "py", "echo \"ModuleNotFoundError: No module named 'wandb'\" >&2; exit 1\n")
    got, text = preflight.check_wandb(str(missing))
    assert not got and "No module named 'wandb'" in text and "unset WANDB_API_KEY" in text
