"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` beside the checkout (real public datasets; see its README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not present: {SHARED_DATA} does not exist")
    return SHARED_DATA
