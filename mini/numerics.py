"""One set of CPU kernels for every machine, so a seed trains the same model on any x86-64 CPU with AVX2.

torch picks its kernels by the CPU's instruction set (ATen's vectorised ops: AVX2 or AVX-512; MKL's GEMMs: its own
dispatch), and kernels of different widths add in different orders: the same seed then trains another model on an
AVX-512 machine than on an AVX2 one (issue 21 measured a warm-up of 56.5% there against 25.0% here). Pinning both
dispatchers to their AVX2 paths gives the same bits on every CPU that has AVX2, and costs nothing on an AVX2 machine,
whose choice it already is. One thread per process: a thread count's split of a reduction is one more order.

Must run before torch is imported; child processes inherit the environment.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# ATen's CPU dispatch (ATEN_CPU_CAPABILITY) and MKL's conditional numerical reproducibility (MKL_CBWR: the AVX2 code
# path on any CPU that has it; STRICT also makes results independent of memory alignment)
PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this is an x86-64 CPU with AVX2 (read from /proc/cpuinfo; elsewhere unknown, so no)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return any(line.startswith("flags") and "avx2" in line.split() for line in cpuinfo.read_text().splitlines())
    except OSError:
        return False


def pin_cpu_numerics(environ=os.environ, avx2: bool | None = None) -> str:
    """Set the pins and one thread per process in `environ` (values a user set are kept); a line saying what was done.

    Without AVX2 (another architecture, or unknown) nothing is pinned: torch's own choice there trains other models
    than the committed study's, and the line says so."""
    for key, value in THREADS.items():
        environ.setdefault(key, value)
    if not (has_avx2() if avx2 is None else avx2):
        return ("numerics: no AVX2 found (or not x86-64): kernels not pinned, so this machine trains other models than "
                "the committed study's; compare with its ranges, not its values")  # fmt: skip
    kept = {k: environ[k] for k in PINS if k in environ and environ[k] != PINS[k]}
    for key, value in PINS.items():
        environ.setdefault(key, value)
    if kept:
        return (f"numerics: kept your {', '.join(f'{k}={v}' for k, v in kept.items())}: other kernels than the "
                "committed study's, so other models; compare with its ranges, not its values")  # fmt: skip
    return "numerics: " + ", ".join(f"{k}={v}" for k, v in {**PINS, **THREADS}.items()) + " (the committed study's)"
