"""Build every dataset the pipeline uses from the LIMR release (GAIR-NLP/LIMR at a pinned commit).

    python data/prepare.py                                              # download from GitHub, write data/
    python data/prepare.py --from ../shared/data/limr-release --out data/   # the same from a local copy
    python data/prepare.py --from my-edited-copy --no_verify            # a copy changed on purpose

Writes into --out: math8k.json, limr.json and validation.json (the paper's prompt format) each with its
OpenRLHF twin (.jsonl, validation rows labelled split "eval") and verl twin (.parquet, limr/verl_data.py),
scores.json (the released LIM scores, for `lim_selection.py --scores_path`), aime24.jsonl / amc23.jsonl /
math500.jsonl ({id, question, answer}) and eval_config.json. Local copies are checked byte for byte against the pinned release, as downloads are, unless
--no_verify. Every input is read and checked before anything is written, and the outputs are written all or
nothing: a bad input, an output that would replace an input, or a write that fails (a full disk) prints one
`error: ...` line and exits 2 with no output touched; usable oddities of the release print `warning: ...`.
data/README.md lists the files, their counts and the warnings printed on the real release.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from limr.checksums import NAME as CHECKSUMS
from limr.checksums import write_checksums
from limr.cli import refuse_overwriting_inputs, refuse_unwritable_outputs
from limr.dataset import (
    Warn,
    check_subset,
    load_benchmark,
    load_eval_config,
    load_prompts,
    load_scores,
    scores_by_id,
    select_by_score,
    write_prompt_files,
)
from limr.jsonio import DataError, all_or_nothing, atomic_write, write_json, write_jsonl
from limr.paper import BENCHMARK_SIZES, LIMR_SIZE, MATH8K_SIZE, THETA, VALIDATION_SIZE
from limr.verl_data import write_verl_parquet

LIMR_COMMIT = "98ebf1bd54cc4539a9ac2332327ab0200bc2a88f"  # GAIR-NLP/LIMR HEAD of 2025-02-20 ("Create scores.json")
BASE_URL = f"https://raw.githubusercontent.com/GAIR-NLP/LIMR/{LIMR_COMMIT}"
# Local name -> (path in GAIR-NLP/LIMR, git blob SHA-1 of that file at LIMR_COMMIT), so a download is checked
# byte for byte. limr.json is absent: the release ships the subset only as an Arrow folder (data/train/limr),
# and `score >= THETA` on scores.json rebuilds exactly its 1,389 ids in the same order, without pyarrow.
RELEASE_FILES = {
    "math8k.json": ("data/prompts/math.8k.json", "fa54ce73e4c256ec345fdfe19a925478fba07df8"),
    "scores.json": ("data/scores.json", "21b9dd33bf2e6bd5bf4a530d6d6e65e84c934d16"),
    "validation.json": ("data/evaluation/test.json", "48121523bd56915d24379294a4d76f12b924c03e"),
    "aime24.jsonl": ("eval/data/aime24.jsonl", "a76c4c20cc6f71efc8b07b6c590f3a44217e3d7e"),
    "amc23.jsonl": ("eval/data/amc23.jsonl", "ea3866248cb066116810efe797d485b42cfd7f80"),
    "math500.jsonl": ("eval/data/math500.jsonl", "953000dc487bf7549c12d737f873952d3b10261f"),
    "eval_config.json": ("eval/config.json", "33f0c60fc7fb7824cb706e84d795673cacb0924d"),
}
BENCHMARKS = tuple(BENCHMARK_SIZES)
SCORES_SIZE = 7935  # the release's scores.json: the prompts with a complete 21-epoch history (not in the paper)
# Row counts each output should have (the paper's, and the release's for scores.json); others warn, or fail --strict.
EXPECTED = {
    "math8k.json": MATH8K_SIZE,
    "limr.json": LIMR_SIZE,
    "validation.json": VALIDATION_SIZE,
    "scores.json": SCORES_SIZE,
    **{f"{b}.jsonl": n for b, n in BENCHMARK_SIZES.items()},
}
OUTPUTS = (
    *(f"{n}.{ext}" for n in ("math8k", "limr", "validation") for ext in ("json", "jsonl", "parquet")),
    "scores.json",
    *(f"{b}.jsonl" for b in BENCHMARKS),
    "eval_config.json",
    CHECKSUMS,  # the hash of each file above, checked by scripts/preflight.sh
)


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content, so a download can be compared with the pinned commit's tree."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch(url: str, desc: str) -> bytes:
    """GET one URL with a progress bar; any failure is a one-line DataError naming the URL."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            size = int(resp.headers.get("Content-Length") or 0) or None
            chunks = []
            with tqdm(total=size, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
                while chunk := resp.read(1 << 16):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as e:
        raise DataError(f"download failed: {url} ({e})") from None
    return b"".join(chunks)


def download_release(dest: Path, base_url: str = BASE_URL) -> None:
    """Fetch the release files into `dest` under the local names that `--from` reads."""
    for name, (path, blob) in RELEASE_FILES.items():
        url = f"{base_url.rstrip('/')}/{path}"
        data = fetch(url, name)
        if git_blob_sha1(data) != blob:
            raise DataError(f"download failed: {url} does not match the release at {LIMR_COMMIT[:12]}")
        with atomic_write(dest / name, "wb") as f:
            f.write(data)


def copy_verified(src: Path, dest: Path) -> None:
    """Copy the release files of a local folder into `dest`, each read once and checked against the pinned commit's
    hash, byte for byte, as a download is; limr.json (no pinned hash) is copied as read. What is then parsed is what
    was hashed: reading the file a second time took a copy swapped in between (1 in 8 tries)."""
    for name, (path, blob) in RELEASE_FILES.items():
        if not (src / name).is_file():
            continue  # reported as missing when the copy is read
        data = (src / name).read_bytes()
        if git_blob_sha1(data) != blob:
            raise DataError(
                f"{src / name} is not {path} of the release at {LIMR_COMMIT[:12]} (changed on purpose? --no_verify)"
            )
        (dest / name).write_bytes(data)
    if (src / "limr.json").is_file():
        (dest / "limr.json").write_bytes((src / "limr.json").read_bytes())


def load_limr(
    src: Path, math8k: list[dict], scores: dict[str, float], warn: Warn, strict: bool, verify: bool = False
) -> tuple[list[dict], str]:
    """The LIMR subset as MATH-8k rows: from limr.json when the folder has one, else rebuilt from the scores.

    limr.json has no pinned hash (the release ships an Arrow folder): verified, it must be exactly the subset that
    the verified scores.json selects.
    """
    by_id = {row["id"]: row for row in math8k}
    selected = [by_id[pid] for pid in select_by_score(scores, THETA)]
    if not (src / "limr.json").exists():
        return selected, f"rebuilt: scores.json >= {THETA}"
    given = load_prompts(src / "limr.json", warn=warn, strict=strict)
    limr = check_subset("limr.json", given, math8k, "math8k.json")
    pairs = zip(given, limr, strict=True)
    relabelled = Counter((g["source"], m["source"]) for g, m in pairs if g["source"] != m["source"])
    for (a, b), n in relabelled.items():
        warn(
            f"limr.json: {n} rows say source {a!r} where math8k.json says {b!r} for the same ids: writing math8k.json's rows"
        )
    if [r["id"] for r in limr] == [r["id"] for r in selected]:
        return limr, f"= scores.json >= {THETA}"
    extra = len({r["id"] for r in limr} - {r["id"] for r in selected})
    missing = len({r["id"] for r in selected} - {r["id"] for r in limr})
    msg = f"limr.json: not the scores.json >= {THETA} selection ({extra} ids extra, {missing} missing, or reordered)"
    if verify:
        raise DataError(f"{msg} (changed on purpose? --no_verify)")
    warn(msg)
    return limr, ""


def load_release(src: Path, warn: Warn, strict: bool = False, verify: bool = False) -> tuple[dict, dict]:
    """Read and check every release file in `src` (with `verify`, a private copy of the bytes checked against the
    pinned hashes); returns ({output name: rows}, {output name: note})."""
    if not src.is_dir():
        raise DataError(f"{src}: no such folder")
    if not verify:
        return read_release(src, warn, strict, verify)
    with tempfile.TemporaryDirectory(prefix="limr-verified-") as tmp:
        copy_verified(src, Path(tmp))
        try:  # messages name the user's folder, not the private copy
            return read_release(Path(tmp), lambda msg: warn(msg.replace(tmp, str(src))), strict, verify)
        except DataError as e:
            raise DataError(str(e).replace(tmp, str(src))) from None


def read_release(src: Path, warn: Warn, strict: bool, verify: bool) -> tuple[dict, dict]:
    """load_release on a folder whose files are the ones to use."""
    kw = {"warn": warn, "strict": strict}
    math8k = load_prompts(src / "math8k.json", **kw)
    scores = load_scores(src / "scores.json", **kw)
    scored = scores_by_id("scores.json", scores, math8k, "math8k.json")
    limr, limr_note = load_limr(src, math8k, scored, warn, strict, verify)
    data = {
        "math8k.json": math8k,
        "limr.json": limr,
        "validation.json": load_prompts(src / "validation.json", repeats_ok=True, **kw),
        "scores.json": scores,
        **{f"{b}.jsonl": load_benchmark(src / f"{b}.jsonl", **kw) for b in BENCHMARKS},
        "eval_config.json": load_eval_config(src / "eval_config.json", BENCHMARKS),
    }
    notes = {
        "math8k.json": "+ math8k.jsonl",
        "limr.json": f"+ limr.jsonl; {limr_note}".rstrip("; "),
        "validation.json": "+ validation.jsonl (split eval)",
        "eval_config.json": "benchmarks: " + ", ".join(data["eval_config.json"]),
    }
    for name, expected in EXPECTED.items():
        if len(data[name]) != expected:
            msg = f"{name}: {len(data[name])} rows, expected {expected}"
            if strict:
                raise DataError(f"{msg} (--strict)")
            warn(msg)
    return data, notes


def write_outputs(data: dict, out: Path) -> None:
    """Write every output atomically; prompt files get their OpenRLHF twins, validation rows split "eval"."""
    write_prompt_files(out / "math8k.json", data["math8k.json"])
    write_prompt_files(out / "limr.json", data["limr.json"])
    write_prompt_files(out / "validation.json", data["validation.json"], split="eval")
    write_verl_twins(data, out)
    write_json(out / "scores.json", data["scores.json"], indent=4)
    for b in BENCHMARKS:
        write_jsonl(out / f"{b}.jsonl", data[f"{b}.jsonl"])
    write_json(out / "eval_config.json", data["eval_config.json"], indent=4)
    write_checksums(out, [name for name in OUTPUTS if name != CHECKSUMS])  # last: it hashes the files above


def write_verl_twins(data: dict, out: Path) -> None:
    """verl's parquet beside each prompt file (limr/verl_data.py), for BACKEND=verl training."""
    for name, split in (("math8k", "train"), ("limr", "train"), ("validation", "eval")):
        write_verl_parquet(out / f"{name}.parquet", data[f"{name}.json"], split)


def summary(data: dict, notes: dict) -> str:
    lines = [f"{'file':<18}{'rows':>6}{'expected':>10}  note"]
    for name, rows in data.items():
        expected = EXPECTED.get(name, "-")
        lines.append(f"{name:<18}{len(rows):>6}{expected:>10}  {notes.get(name, '')}".rstrip())
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = "\n\n".join(__doc__.split("\n\n")[:2])  # the title and the run commands
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="src", type=Path, metavar="DIR", help="local folder laid out like limr-release")
    p.add_argument("--out", type=Path, metavar="DIR", default=Path(__file__).resolve().parent, help="default: data/")
    p.add_argument(
        "--strict", action="store_true", help="unexpected counts and unknown fields are errors, not warnings"
    )
    p.add_argument("--base_url", default=BASE_URL, help="where the release files are downloaded from (a mirror)")
    p.add_argument(
        "--no_verify",
        action="store_true",
        help="--from: use files that differ from the pinned release (edited copies)",
    )
    args = p.parse_args(argv)
    if args.no_verify and args.src is None:
        p.error("--no_verify goes with --from: downloads are always checked")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings: list[str] = []
    outputs = [args.out / name for name in OUTPUTS]
    try:
        if args.src is not None:
            refuse_overwriting_inputs([args.src / name for name in (*RELEASE_FILES, "limr.json")], outputs)
        refuse_unwritable_outputs(outputs)
        if args.src is not None:
            data, notes = load_release(args.src, warnings.append, args.strict, verify=not args.no_verify)
        else:
            with tempfile.TemporaryDirectory(prefix="limr-release-") as tmp:
                download_release(Path(tmp), args.base_url)
                data, notes = load_release(Path(tmp), warnings.append, args.strict, verify=True)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        with all_or_nothing():  # a full disk on the last file leaves no math8k.json behind
            write_outputs(data, args.out)
    except OSError as e:
        print(f"error: cannot write to {args.out}, nothing written ({e})", file=sys.stderr)
        return 2
    print(f"wrote {args.out} from {args.src or args.base_url}")
    print(summary(data, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
