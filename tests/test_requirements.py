"""Our pins against what the pinned packages themselves declare: `pip install` must be able to resolve them.

tests/fixtures/requires_dist/ holds the Requires-Dist lines of each pinned package's wheel METADATA, copied verbatim
(each file's first line says where from: PyPI's PEP 658 metadata read by `pip install --dry-run --report` for vllm
and ray, whose wheels are large; metadata built from the sdist for deepspeed and flash-attn, which ship only one;
the installed dist-info for the rest). A pin outside any of them (fastapi>=0.160 against vllm's <0.137, once) fails.
"""

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures") / "requires_dist"
ENV = {"python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython"}  # fmt: skip


def our_pins(path: Path) -> dict[str, Requirement]:
    """The package requirements of a requirements file (options and editable installs skipped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req
    return pins


def declared() -> dict[tuple[str, str], list[Requirement]]:
    """(package, version) -> its Requires-Dist lines."""
    out = {}
    for path in sorted(FIXTURES.glob("*.txt")):
        name, version = path.stem.rsplit("-", 1)
        lines = [
            x.removeprefix("Requires-Dist: ") for x in path.read_text().splitlines() if x.startswith("Requires-Dist")
        ]
        out[(canonicalize_name(name), version)] = [Requirement(x) for x in lines]
    return out


def applies(req: Requirement, extras: set[str]) -> bool:
    """A requirement that pip installs on a Linux x86_64 Python 3.11 node with these extras of its package."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate(ENV | {"extra": extra}) for extra in extras | {""})


def candidates(*specifiers) -> list[Version]:
    """Versions at and around every bound: enough to compare simple ranges."""
    found = set()
    for spec in specifiers:
        for s in spec:
            v = Version(s.version.replace(".*", ""))
            major, minor, micro = (list(v.release) + [0, 0])[:3]
            found |= {v, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}")}
            found |= (
                {Version(f"{major}.{minor - 1}.99")} if minor else {Version(f"{major - 1}.999")} if major else set()
            )
    return sorted(found)


def conflicts(pins: dict[str, Requirement], metadata: dict, extras: bool = True) -> list[str]:
    """Every declared requirement of a pinned package that one of our pins steps outside of (or, with `extras`,
    whose extras ours lacks)."""
    found = []
    for (name, version), reqs in metadata.items():
        if name not in pins or not pins[name].specifier.contains(version):
            continue  # metadata of a package (or version) we do not install
        for req in reqs:
            ours = pins.get(canonicalize_name(req.name))
            if ours is None or not applies(req, set(pins[name].extras)):
                continue
            outside = [v for v in candidates(ours.specifier, req.specifier)
                       if ours.specifier.contains(v, prereleases=True) and not req.specifier.contains(v, prereleases=True)]  # fmt: skip
            if outside:
                found.append(f"{name} {version} requires {req}; ours: {ours} allows {outside[0]}")
            missing = set(req.extras) - set(ours.extras)
            if extras and missing and canonicalize_name(req.name) != name:
                found.append(f"{name} {version} requires {req}; ours: {ours} lacks the extras {sorted(missing)}")
    return found


def test_every_gpu_pin_has_its_metadata_here():
    pins, metadata = our_pins(ROOT / "requirements.txt"), declared()
    exact = {n: str(r.specifier).removeprefix("==") for n, r in pins.items() if str(r.specifier).startswith("==")}
    have = {n: v for n, v in metadata}
    assert set(exact) - {"torch"} <= set(have), "add the METADATA of every exact pin (torch's constrains nothing)"
    assert all(exact.get(n) == v for n, v in have.items() if n in exact), (exact, have)  # same versions


@pytest.mark.parametrize("requirements", ["requirements.txt", "requirements-cpu.txt"])
def test_pins_lie_inside_what_the_pinned_packages_declare(requirements):
    gpu = our_pins(ROOT / "requirements.txt")
    pins = our_pins(ROOT / requirements)
    if requirements == "requirements.txt":
        assert conflicts(pins, declared()) == []
    else:  # the CPU set's versions against the cluster's packages: its server must run the fastapi the cluster runs
        assert conflicts(gpu | pins, declared(), extras=False) == []


def test_openrlhf_and_vllm_pins_are_the_ones_the_gpu_file_uses():
    pins, metadata = our_pins(ROOT / "requirements.txt"), declared()
    openrlhf = {
        canonicalize_name(r.name): str(r.specifier) for r in metadata[("openrlhf", "0.11.2")] if r.marker is None
    }
    for name in ("deepspeed", "flash-attn", "ray", "transformers"):
        assert str(pins[name].specifier) == openrlhf[name]  # openrlhf pins these exactly: we must match
    vllm = {canonicalize_name(r.name): r for r in metadata[("vllm", "0.29.0")] if r.marker is None}
    assert str(pins["torch"].specifier) == str(vllm["torch"].specifier) == "==2.13.0"
    assert "standard" in vllm["fastapi"].extras and "standard" in pins["fastapi"].extras


@pytest.mark.parametrize(
    "line, pinned",
    [
        ("fastapi>=0.160,<1", "fastapi"),  # what requirements.txt said before: vllm 0.29.0 wants <0.137
        ("fastapi[standard]>=0.120,<0.137", "fastapi"),  # below vllm's 0.133
        ("fastapi>=0.133,<0.137", "fastapi"),  # in range, but without the [standard] extra vllm asks for
        ("transformers==5.14.0", "transformers"),  # openrlhf 0.11.2 pins 5.15.0
        ("deepspeed==0.19.5", "deepspeed"),
    ],
)
def test_a_pin_outside_the_declared_range_is_caught(line, pinned):
    pins = our_pins(ROOT / "requirements.txt")
    pins[pinned] = Requirement(line)
    assert conflicts(pins, declared()), f"{line} should conflict"


# ---- Python versions: what we promise, against each exact pin's Requires-Python ---------------------------------


def requires_python() -> dict[tuple[str, str], SpecifierSet]:
    """(package, version) -> its Requires-Python, stored with its Requires-Dist ("" where it declares none)."""
    out = {}
    for path in sorted(FIXTURES.glob("*.txt")):
        name, version = path.stem.rsplit("-", 1)
        (line,) = [x for x in path.read_text().splitlines() if x.startswith("Requires-Python:")]
        out[(canonicalize_name(name), version)] = SpecifierSet(line.removeprefix("Requires-Python:").strip())
    return out


def promised() -> list[str]:
    """Every Python minor version pyproject.toml admits, up to the newest any release has (3.14)."""
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [v for v in (f"3.{minor}" for minor in range(8, 15)) if spec.contains(f"{v}.0")]


def exact_pins() -> dict[str, str]:
    reqs = [*our_pins(ROOT / "requirements.txt").values(), *our_pins(ROOT / "requirements-cpu.txt").values()]
    reqs += [Requirement(x) for x in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    return {canonicalize_name(r.name): str(r.specifier)[2:] for r in reqs if str(r.specifier).startswith("==")}


def test_every_exact_pin_installs_on_every_python_we_promise():
    """pip skips a release whose Requires-Python excludes the interpreter ("No matching distribution"): trl 1.16.0
    needs 3.11, so the promise of 3.10 could not install requirements.txt."""
    stored, versions = requires_python(), promised()
    assert versions and versions[0] == "3.11", versions
    missing = {f"{n}=={v}" for n, v in exact_pins().items() if (n, v) not in stored}
    assert not missing, f"store the Requires-Python of {missing} in {FIXTURES}"
    refused = [f"{n}=={v} (Requires-Python {stored[(n, v)]}) on {py}" for n, v in exact_pins().items()
               for py in versions if not stored[(n, v)].contains(f"{py}.0")]  # fmt: skip
    assert refused == []


def test_a_promise_of_3_10_would_be_caught():
    stored = requires_python()
    assert not stored[("trl", "1.16.0")].contains("3.10.0") and stored[("trl", "1.16.0")].contains("3.11.0")


def test_the_docs_promise_what_pyproject_does():
    """The README's quickstart says the same minimum as pyproject.toml."""
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"Python ≥ (3\.\d+)", readme).group(1) == promised()[0]
