"""mini/numerics.py: the kernel pins that make a seed train the same model on any x86-64 CPU with AVX2 (issue 21)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mini.numerics import PINS, THREADS, has_avx2, pin_cpu_numerics

ROOT = Path(__file__).resolve().parent.parent

TRAIN = """
import hashlib, io, contextlib, torch
from mini.policy import build_model, build_tokenizer, sft
from mini.tasks import make_splits
tok = build_tokenizer()
model = build_model(tok, 64, 2, 4, seed=1)
with contextlib.redirect_stderr(io.StringIO()):
    sft(model, tok, make_splits(8, 4, 4, 400, 1).warm, 30, 16, 3e-3, 1)
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(b"".join(p.detach().numpy().tobytes()
      for p in model.parameters())).hexdigest())
"""


def train_hash(**env) -> tuple[str, str]:
    """A short warm-up in a fresh process under `env` (the pins set by pin_cpu_numerics first): capability, hash."""
    environ = {k: v for k, v in os.environ.items() if k not in {*PINS, *THREADS, "MKL_ENABLE_INSTRUCTIONS"}}
    pin_cpu_numerics(environ)
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", TRAIN], env=environ, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return out[0], out[1]


def test_pins_keep_what_a_user_set_and_say_so():
    env = {"ATEN_CPU_CAPABILITY": "default"}
    line = pin_cpu_numerics(env, avx2=True)
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["MKL_CBWR"] == PINS["MKL_CBWR"]
    assert "kept your ATEN_CPU_CAPABILITY=default" in line and env["OMP_NUM_THREADS"] == "1"
    env = {}
    assert "the committed study's" in pin_cpu_numerics(env, avx2=True) and env == {**PINS, **THREADS}
    env = {}
    assert "not pinned" in pin_cpu_numerics(env, avx2=False) and env == THREADS


def test_avx2_is_read_from_the_cpu_flags(tmp_path):
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n")
    no = tmp_path / "old"
    no.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx\n")
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        assert has_avx2(flags) and not has_avx2(no) and not has_avx2(tmp_path / "absent")


@pytest.mark.skipif(not has_avx2(), reason="the pins need an x86-64 CPU with AVX2")
def test_pinned_training_does_not_depend_on_the_instruction_sets_mkl_and_onednn_may_use():
    """Under the pins, capping MKL's and oneDNN's instruction sets (what a CPU without AVX-512 does to them) leaves the
    trained weights bit for bit the same; ATen's own dispatch is what ATEN_CPU_CAPABILITY pins, and a lower one
    trains other weights, which is why it is pinned."""
    capability, pinned = train_hash()
    assert capability == "AVX2"
    assert train_hash(MKL_ENABLE_INSTRUCTIONS="AVX", ONEDNN_MAX_CPU_ISA="SSE41") == (capability, pinned)
    assert train_hash(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")[1] != pinned
