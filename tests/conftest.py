"""Shared test fixtures: where the public release files live, when this checkout has them."""

import contextlib
import resource
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repo (never committed); tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (public release files for tests)")
    return SHARED_DATA


@pytest.fixture
def disk_full_past():
    """A context manager: inside it, writes past `limit` bytes fail with EFBIG as on a full disk (Python ignores
    SIGXFSZ), so a command's all-or-nothing writes can be tested in-process, as root too."""

    @contextlib.contextmanager
    def limit_writes(limit: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    return limit_writes
