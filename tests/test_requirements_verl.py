"""requirements-verl.txt (the verl stack) against what its pinned packages declare, as tests/test_requirements.py
checks requirements.txt: the Requires-Dist of each pinned wheel is stored in tests/fixtures/requires_dist_verl/
(ray's and flash-attn's are shared with tests/fixtures/requires_dist/). And the one conflict the file works around:
Hydra 1.3's antlr 4.9 against pyproject.toml's math-verify[antlr4_13_2], with the grader's verdicts under both."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_requirements import ENV, applies, conflicts, our_pins

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures")
SHARED = {"ray-2.55.0.txt", "flash_attn-2.8.3.txt"}  # the same versions as requirements.txt's
VERL = ROOT / "requirements-verl.txt"
NO_METADATA = {"torch", "torchvision", "torchaudio", "antlr4-python3-runtime"}  # they constrain nothing we pin


def declared() -> dict[tuple[str, str], list[Requirement]]:
    """(package, version) -> its Requires-Dist lines, for the verl stack."""
    paths = sorted((FIXTURES / "requires_dist_verl").glob("*.txt")) + [FIXTURES / "requires_dist" / n for n in SHARED]
    out = {}
    for path in paths:
        name, version = path.stem.rsplit("-", 1)
        lines = [
            x.removeprefix("Requires-Dist: ") for x in path.read_text().splitlines() if x.startswith("Requires-Dist")
        ]
        out[(canonicalize_name(name), version)] = [Requirement(x) for x in lines]
    return out


def test_every_verl_pin_has_its_metadata_here():
    pins, metadata = our_pins(VERL), declared()
    exact = {n: str(r.specifier).removeprefix("==") for n, r in pins.items() if str(r.specifier).startswith("==")}
    have = dict(metadata)
    missing = {n for n, v in exact.items() if (n, v) not in have} - NO_METADATA
    assert missing == set(), "add the METADATA of every exact pin"


def test_verl_pins_lie_inside_what_the_pinned_packages_declare():
    assert conflicts(our_pins(VERL), declared()) == []


def test_the_gpu_stack_is_the_one_verls_vllm_extra_names():
    pins = our_pins(VERL)
    verl = [r for r in declared()[("verl", "0.9.1")] if r.marker is not None and applies(r, {"vllm"})]
    exact = {canonicalize_name(r.name): str(r.specifier) for r in verl if str(r.specifier).startswith("==")}
    assert {n: str(pins[n].specifier) for n in exact} == exact  # torch, torchvision, torchaudio, vllm, transformers
    assert "vllm" in pins["verl"].extras


@pytest.mark.parametrize(
    "line, pinned",
    [
        ("transformers==5.15.0", "transformers"),  # requirements.txt's: verl 0.9.1 asks <5.11
        ("torch==2.13.0", "torch"),  # requirements.txt's: vllm 0.24.0 pins 2.11.0
        ("tensordict==0.9.0", "tensordict"),  # verl excludes it
        ("omegaconf==2.4.0", "omegaconf"),  # hydra-core 1.3.8 asks <2.4
        ("antlr4-python3-runtime==4.13.2", "antlr4-python3-runtime"),  # hydra-core 1.3.8 asks 4.9.*
    ],
)
def test_a_pin_outside_the_declared_range_is_caught(line, pinned):
    pins = our_pins(VERL)
    pins[canonicalize_name(pinned)] = Requirement(line)
    assert conflicts(pins, declared()), f"{line} should conflict"


def antlr_of(math_verify: Requirement) -> set[str]:
    """The antlr4 runtime versions a math-verify requirement installs (through latex2sympy2_extended's extras)."""
    metadata = declared()
    versions = set()
    for req in metadata[("math-verify", "0.9.0")]:
        if canonicalize_name(req.name) == "latex2sympy2-extended" and applies(req, set(math_verify.extras)):
            for inner in metadata[("latex2sympy2-extended", "1.11.0")]:
                if canonicalize_name(inner.name) == "antlr4-python3-runtime" and inner.marker is not None:
                    if any(inner.marker.evaluate(ENV | {"extra": e}) for e in req.extras):
                        versions |= {str(inner.specifier).removeprefix("==")}
    return versions


def test_math_verifys_antlr_is_hydras_here_and_not_with_pyprojects_extra():
    """Why step 4 of the install is --no-deps: pyproject.toml's math-verify extra pins the antlr Hydra 1.3 refuses."""
    hydra = next(
        r for r in declared()[("hydra-core", "1.3.8")] if canonicalize_name(r.name) == "antlr4-python3-runtime"
    )
    ours = antlr_of(our_pins(VERL)["math-verify"])
    assert ours == {"4.9.3"} and all(hydra.specifier.contains(v) for v in ours)
    text = (ROOT / "pyproject.toml").read_text()
    pyproject = Requirement("math-verify" + text.split('"math-verify', 1)[1].split('"', 1)[0])  # its dependencies
    assert antlr_of(pyproject) == {"4.13.2"} and not hydra.specifier.contains("4.13.2")


VERDICTS = r"""
import json, sys
import antlr4
from limr.grader import grade
answers = json.loads(sys.stdin.read())
out = []
for mode in ("default", "limr"):
    for a in answers:
        for response in (f"\\boxed{{{a}}}", f"\\boxed{{{a}+1}}"):
            v = grade(response, a, mode)
            out.append([v.correct, v.extracted])
print(json.dumps({"antlr": antlr4.__file__, "verdicts": out}))
"""


def test_the_graders_verdicts_are_the_same_on_hydras_antlr(shared_data_or_none):
    """The verl environment grades with antlr 4.9.3 (make setup's .venv/verl-hydra13 holds it); this one with
    4.13.2: the same verdicts on a sample of MATH-8k's gold answers (when ../shared/data is here)."""
    hydra13 = Path(sys.prefix) / "verl-hydra13"
    if not (hydra13 / "antlr4").is_dir():
        pytest.skip(f"{hydra13} not found: make setup installs antlr4 4.9.3 there")
    answers = [
        "\\frac{1}{2}",
        "3\\sqrt{13}",
        "\\pi",
        "(1,2)",
        "x^2+1",
        "\\{1,2\\}",
        "10\\%",
        "\\infty",
        "2^{10}",
        "-3",
    ]
    if shared_data_or_none is not None:
        prompts = json.loads((shared_data_or_none / "limr-release" / "math8k.json").read_text())
        answers += [p["answer"] for p in prompts][::16]  # every 16th: 533 answers, both modes, two responses each
    runs = {}
    for name, path in (("4.13.2", str(ROOT)), ("4.9.3", os.pathsep.join([str(hydra13), str(ROOT)]))):
        env = dict(os.environ, PYTHONPATH=path)
        proc = subprocess.run([sys.executable, "-c", VERDICTS], input=json.dumps(answers), env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = json.loads(proc.stdout.splitlines()[-1])
    assert str(hydra13) in runs["4.9.3"]["antlr"] and str(hydra13) not in runs["4.13.2"]["antlr"]
    assert runs["4.9.3"]["verdicts"] == runs["4.13.2"]["verdicts"]
    assert {correct for correct, _ in runs["4.9.3"]["verdicts"]} == {True, False}  # both verdicts occur


@pytest.fixture
def shared_data_or_none():
    from conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None
