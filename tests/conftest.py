"""Fixtures shared by the whole suite (helpers live in ``_shared.py``)."""

import pytest

from _shared import synthetic_field


@pytest.fixture
def field():
    """A synthetic RGB field with 4 red round and 4 blue elongated cells."""
    return synthetic_field()
