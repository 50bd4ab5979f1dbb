"""Shared test fixtures: where the public release files live, when this checkout has them."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repo (never committed); tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (public release files for tests)")
    return SHARED_DATA
