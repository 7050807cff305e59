"""Fixtures of the io tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from io_helpers import SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    """The real fixtures folder, or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real fixtures not available: {SHARED_DATA} is missing")
    return SHARED_DATA
