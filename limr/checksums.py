"""SHA256SUMS: the hash of every file data/prepare.py wrote, beside them, in `sha256sum`'s format (so
`cd data && sha256sum -c SHA256SUMS` checks them too). The preflight compares a node's prompt files with it before a
multi-day run: a file edited, half-copied or left from another release fails there, not hours into training."""

from __future__ import annotations

import hashlib
from pathlib import Path

from limr.jsonio import atomic_write, pending_path

NAME = "SHA256SUMS"


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path, names: list[str]) -> None:
    """folder/SHA256SUMS for `names`, written inside the same all_or_nothing() as the files: it hashes the bytes that
    will land (the pending temporary files), so the manifest and the files move into place together."""
    lines = [f"{sha256_of(pending_path(folder / name))}  {name}\n" for name in sorted(names)]
    with atomic_write(folder / NAME) as f:
        f.writelines(lines)


def listed_sha256(path: Path) -> str | None:
    """The hash SHA256SUMS beside `path` records for it; None where there is no such file or it does not list it."""
    manifest = path.parent / NAME
    if not manifest.is_file():
        return None
    for row in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = row.partition("  ")
        if name.lstrip("*") == path.name:
            return digest.strip().lower()
    return None
