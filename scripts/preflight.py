"""The checks of scripts/preflight.sh: prove a node in minutes before a multi-day run.

    bash scripts/preflight.sh                                  # how it is run: the preset's figures, then this file
    python scripts/preflight.py --preset node --gpus 8 --data data/math8k.jsonl data/validation.jsonl

One line per check, `ok` or `FAIL` (with its fix); every check runs whatever failed before; exit 1 if any failed,
2 on bad arguments. The GPU-facing probes are programs (nvidia-smi, nvcc, the Python that builds DeepSpeed's CPU
Adam), so tests replace them on PATH / CUDA_HOME and nothing else. The figures each preset needs are in NEEDS, with
their sources in scripts/README.md ("Presets").
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's limr, installed or not
from limr.checksums import NAME as CHECKSUMS  # noqa: E402
from limr.checksums import listed_sha256  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
# What one node needs per preset (scripts/README.md, "Presets"): CPU RAM for ZeRO-3 offload (fp32 master weights,
# Adam moments and gradient buffers, 16-18 bytes per parameter, DeepSpeed runtime/zero/stage3.py) of actor and critic,
# which Ray may place on one node, plus vLLM's weights asleep on the CPU in the colocated presets; a checkpoint's
# size (bf16 weights).
PARAMS = {"7B": 7.62e9, "1.5B": 1.54e9}
NEEDS = {  # preset: (model size, CPU RAM per node in GB, checkpoint GB)
    "paper": ("7B", 300, 15.2),  # actor + critic offloaded on one node: 2 x 137 GB, plus Ray and loading
    "node": ("7B", 400, 15.2),  # the same + 8 sleeping vLLM engines x 15.2 GB
    "single": ("1.5B", 64, 3.1),  # 2 x 1.54B x 18 B + one sleeping engine (3.1 GB)
    "smoke": ("1.5B", 64, 3.1),
}
GPU_MIB = 80_000  # an 80 GB card reports 81,559 (H100) to 81,920 MiB (A100/A800)
DRIVER_FOR_CUDA = {13: 580, 12: 525}  # the least Linux driver for each CUDA major (NVIDIA's CUDA release notes)
PACKAGES = {"torch": "torch", "flash-attn": "flash_attn", "vllm": "vllm", "ray": "ray", "deepspeed": "deepspeed",
            "openrlhf": "openrlhf", "transformers": "transformers"}  # fmt: skip
CPU_ADAM = "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load(); print('built')"


def line(ok: bool, name: str, text: str, fix: str = "") -> tuple[bool, str]:
    return ok, f"{'ok  ' if ok else 'FAIL'} {name}: {text}" + ("" if ok or not fix else f"; fix: {fix}")


def probe(cmd: list[str], timeout: float = 30, env: dict | None = None) -> tuple[int, str]:
    """Run a program; (exit status, stdout + stderr). A missing program is status 127."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        return 127, f"{cmd[0]} not found"
    except subprocess.TimeoutExpired:
        return 124, f"{cmd[0]} did not finish in {timeout:.0f} s"
    return r.returncode, (r.stdout + r.stderr).strip()


def pins(requirements: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """name -> version of every exact pin in requirements.txt (the one place they are written)."""
    out = {}
    for raw in requirements.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?==([^\s;#]+)", raw.strip())
        if m:
            out[m.group(1).lower()] = m.group(3)
    return out


def torch_cuda(python: str) -> str | None:
    """The CUDA version the installed torch was built for (None: no torch, or a CPU build)."""
    rc, out = probe([python, "-c", "import torch; print(torch.version.cuda)"])
    return out.splitlines()[-1] if rc == 0 and out and out.splitlines()[-1] != "None" else None


def check_driver(cuda: str | None, want_cuda: int) -> tuple[bool, str]:
    rc, out = probe(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    need = DRIVER_FOR_CUDA[want_cuda]
    fix = f"install NVIDIA driver >= {need} (torch {pins().get('torch', '?')} from PyPI is built for CUDA {want_cuda})"
    if rc != 0:
        return line(False, "NVIDIA driver", f"nvidia-smi failed ({out.splitlines()[-1] if out else rc})", fix)
    m = re.match(r"\s*(\d+)\.[\d.]+\s*$", out.splitlines()[0] if out else "")
    if not m:
        return line(False, "NVIDIA driver", f"nvidia-smi gave no driver version: {out[:80]!r}", fix)
    version = m.group(0).strip()
    if int(m.group(1)) < need:
        return line(False, "NVIDIA driver", f"{version} is older than {need}, which CUDA {want_cuda} needs", fix)
    return line(True, "NVIDIA driver", f"{version} (>= {need} for CUDA {want_cuda}; torch built for {cuda})")


def check_gpus(gpus: int, preset: str) -> tuple[bool, str]:
    rc, out = probe(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"])
    fix = f"PRESET={preset} needs {gpus} GPU(s) of 80 GB per node: run it on such a node (or pick another PRESET)"
    if rc != 0:
        return line(False, "GPUs", f"cannot list them ({out.splitlines()[-1] if out else rc})", fix)
    if not re.fullmatch(r"[\d.\s]+", out):
        return line(False, "GPUs", f"nvidia-smi gave no memory sizes: {out[:80]!r}", fix)
    mib = [int(float(x)) for x in out.split()]
    small = [m for m in mib if m < GPU_MIB]
    if len(mib) < gpus or small:
        return line(False, "GPUs", f"{len(mib)} GPU(s), MiB {mib}: PRESET={preset} needs {gpus} of >= {GPU_MIB}", fix)
    return line(True, "GPUs", f"{len(mib)} x {min(mib)} MiB (PRESET={preset} needs {gpus} of >= {GPU_MIB})")


def check_memory(preset: str, meminfo: Path = Path("/proc/meminfo")) -> tuple[bool, str]:
    need = NEEDS[preset][1]
    kb = int(re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text()).group(1))
    have = kb * 1024 / GB
    fix = f"use nodes with >= {need} GB of RAM for PRESET={preset} (scripts/README.md, Presets)"
    return line(have >= need, "CPU memory", f"{have:.0f} GB, PRESET={preset} needs {need} GB per node", fix)


def check_disk(out: Path, preset: str, train_steps: int, save_steps: int) -> tuple[bool, str]:
    size = NEEDS[preset][2]
    saves = train_steps // save_steps + 1  # every SAVE_STEPS-th step, and final_hf
    need = saves * size
    where = out
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free / GB
    fix = f"free space under {out}, point OUT at a larger disk, or save less often (SAVE_STEPS={save_steps * 10})"
    text = f"{free:.0f} GB free at {where}, {saves} checkpoints x {size} GB = {need:.0f} GB needed"
    return line(free >= need, "disk", text, fix)


def check_toolkit(cuda: str | None, want_cuda: int) -> tuple[bool, str]:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = str(Path(home) / "bin" / "nvcc") if home else (shutil.which("nvcc") or "nvcc")
    fix = f"install a CUDA {want_cuda}.x toolkit (nvcc) and set CUDA_HOME: DeepSpeed builds its CPU Adam with it"
    rc, out = probe([nvcc, "-V"])
    m = re.search(r"release (\d+)\.(\d+)", out)
    if rc != 0 or not m:
        return line(False, "CUDA toolkit", f"no nvcc ({nvcc}: {out.splitlines()[-1] if out else rc})", fix)
    if int(m.group(1)) != want_cuda:
        return line(False, "CUDA toolkit", f"nvcc {m.group(1)}.{m.group(2)}, torch needs CUDA {want_cuda}.x", fix)
    return line(True, "CUDA toolkit", f"nvcc {m.group(1)}.{m.group(2)} at {nvcc} (torch built for {cuda})")


def check_cpu_adam(python: str, timeout: float) -> tuple[bool, str]:
    """Build (or load the cached) DeepSpeed CPU Adam op, as --ds.adam_offload does on first use, with the launch's env."""
    env = dict(os.environ, DS_SKIP_CUDA_CHECK="1")
    rc, out = probe([python, "-c", CPU_ADAM], timeout=timeout, env=env)
    fix = "pip install -r requirements.txt, a CUDA toolkit (above), ninja; the error is the last line"
    if rc != 0:
        return line(False, "DeepSpeed CPU Adam", f"build failed: {out.splitlines()[-1] if out else rc}", fix)
    return line(True, "DeepSpeed CPU Adam", "built and loaded (cached for the run; DS_SKIP_CUDA_CHECK=1)")


def check_import(python: str, dist: str, module: str, want: str | None) -> tuple[bool, str]:
    code = f"import importlib.metadata, {module}; print(importlib.metadata.version({dist!r}))"
    rc, out = probe([python, "-c", code], timeout=300)
    fix = "pip install -r requirements.txt (scripts/README.md, Install on GPU nodes)"
    if rc != 0:
        return line(False, f"import {module}", out.splitlines()[-1] if out else f"exit {rc}", fix)
    have = out.splitlines()[-1]
    if want and have.split("+")[0] != want:
        return line(False, f"import {module}", f"version {have}, requirements.txt pins {want}", fix)
    return line(True, f"import {module}", have)


def no_proxy_get(url: str, timeout: float = 3) -> int:
    """GET without any proxy (urllib honours http_proxy; OpenRLHF's aiohttp client does not): the status code."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return r.status


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_reward(host: str, bind: str, port: int, head: bool) -> tuple[bool, str]:
    url = f"http://{host}:{port}/health"
    try:
        status = no_proxy_get(url)
        return line(status == 200, "reward server", f"{url} answers {status} (asked without a proxy)", "see its log")
    except OSError as e:
        reason = str(getattr(e, "reason", e))
    if head:
        ok = port_free(bind, port)
        text = f"nothing answers {url} yet and {bind}:{port} is free for the launcher's server"
        return line(ok, "reward server", text if ok else f"{bind}:{port} is taken ({reason})",
                    "stop what holds the port or set REWARD_PORT")  # fmt: skip
    try:
        socket.getaddrinfo(host, port)
    except OSError as e:
        return line(False, "reward server", f"{host} does not resolve ({e})", "set MASTER_ADDR to the head's address")
    return line(True, "reward server", f"{host} resolves; {url} not up yet ({reason}): the head starts it")


def check_ray_ports(head: bool, master: str, ray_port: int) -> tuple[bool, str]:
    if head and os.environ.get("RAY_ADDRESS"):  # the launcher uses that cluster and starts no Ray head here
        return line(True, "Ray ports", f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}: a running cluster, no ports to take")
    if head:
        ports = [ray_port, 8265, 10001]  # GCS, dashboard, Ray client: what `ray start --head` binds by default
        taken = [p for p in ports if not port_free("0.0.0.0", p)]
        fix = "stop the Ray or process holding them (ray stop), or set RAY_PORT"
        return line(not taken, "Ray ports", f"{ports} free" if not taken else f"taken: {taken}", fix)
    try:
        with socket.create_connection((master, ray_port), timeout=3):
            return line(True, "Ray ports", f"the head's Ray answers at {master}:{ray_port}")
    except OSError as e:
        return line(True, "Ray ports", f"{master}:{ray_port} not up yet ({e}); the worker waits for it")


def check_data(f: Path) -> tuple[bool, str]:
    """A prompt file is there, in OpenRLHF's format, with the hash data/prepare.py recorded for it in SHA256SUMS
    (limr/checksums.py); a file it did not write (a selection of yours) shows its hash, to compare across nodes."""
    if not f.is_file():
        return line(False, f"data {f.name}", f"{f} not found", "python data/prepare.py (or the run's PROMPTS_CMD)")
    data = f.read_bytes()
    rows = [x for x in data.decode(errors="replace").splitlines() if x.strip()]
    try:
        first = json.loads(rows[0]) if rows else None
    except ValueError:
        first = None
    digest, listed = hashlib.sha256(data).hexdigest(), listed_sha256(f)
    text = f"{len(rows)} rows, sha256 {digest[:16]}"
    if listed is not None and listed != digest:
        return line(False, f"data {f.name}", f"{text}, but {f.parent / CHECKSUMS} says {listed[:16]}: changed since "
                    "data/prepare.py wrote it (edited, half-copied?)", "python data/prepare.py")  # fmt: skip
    if not (isinstance(first, dict) and "label" in first and "context_messages" in first):
        return line(False, f"data {f.name}", f"{text}: not OpenRLHF prompt rows", "python data/prepare.py")
    return line(True, f"data {f.name}", text + (f", as {CHECKSUMS} records" if listed else f" (not in a {CHECKSUMS})"))


def check_wandb(python: str) -> tuple[bool, str]:
    if not os.environ.get("WANDB_API_KEY"):
        return line(True, "wandb", "off (no WANDB_API_KEY): tensorboard only")
    rc, out = probe([python, "-c", "import wandb"], timeout=120)
    return line(rc == 0, "wandb", "WANDB_API_KEY set, wandb imports" if rc == 0 else out.splitlines()[-1],
                "pip install wandb, or unset WANDB_API_KEY")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", required=True)
    p.add_argument("--gpus", type=int, required=True, help="GPUs per node the preset needs")
    p.add_argument("--node_rank", type=int, default=0)
    p.add_argument("--master_addr", default="127.0.0.1")
    p.add_argument("--reward_host", default="127.0.0.1")
    p.add_argument("--reward_bind", default="127.0.0.1")
    p.add_argument("--reward_port", type=int, default=5000)
    p.add_argument("--ray_port", type=int, default=6379)
    p.add_argument("--out", type=Path, default=Path("outputs"))
    p.add_argument("--train_steps", type=int, default=189)
    p.add_argument("--save_steps", type=int, default=1)
    p.add_argument("--data", type=Path, nargs="*", default=[], help="the run's prompt files")
    p.add_argument("--python", default=sys.executable, help="the Python of the cluster stack")
    p.add_argument("--build_timeout", type=float, default=900)
    a = p.parse_args(argv)
    if a.preset not in NEEDS or a.gpus < 1 or a.save_steps < 1:
        print(f"error: unknown PRESET '{a.preset}' or bad counts (presets: {', '.join(NEEDS)})", file=sys.stderr)
        return 2
    head = a.node_rank == 0
    want_cuda = 13  # PyPI's torch 2.13.0 is the CUDA 13.0 build (scripts/README.md, Install on GPU nodes)
    cuda = torch_cuda(a.python)
    checks = [
        lambda: check_driver(cuda, want_cuda),
        lambda: check_gpus(a.gpus, a.preset),
        lambda: check_memory(a.preset),
        lambda: check_disk(a.out, a.preset, a.train_steps, a.save_steps),
        lambda: check_toolkit(cuda, want_cuda),
        lambda: check_cpu_adam(a.python, a.build_timeout),
        *(lambda d=dist, m=mod: check_import(a.python, d, m, pins().get(d)) for dist, mod in PACKAGES.items()),
        lambda: check_reward(a.reward_host, a.reward_bind, a.reward_port, head),
        lambda: check_ray_ports(head, a.master_addr, a.ray_port),
        *(lambda f=f: check_data(f) for f in a.data),
        lambda: check_wandb(a.python),
    ]
    results = []
    for check in checks:
        try:
            result = check()
        except Exception as e:  # a check that breaks is a failed check, and the others still run
            result = line(False, "check", f"{type(e).__name__}: {e}", "report it")
        results.append(result)
        print(result[1], flush=True)
    failed = sum(not ok for ok, _ in results)
    print(f"preflight: {len(results) - failed} ok, {failed} FAIL" + (" (fix each FAIL above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
