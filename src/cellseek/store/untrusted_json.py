"""JSON text read from a store file, which may come from anyone.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on deeply nested input such as
``[[[[...]]]]``; every reader of a store's JSON catches ``ValueError`` to turn malformed text into
one clear :class:`~cellseek.errors.StoreError`, so :func:`loads` makes both one kind of error.
"""

from __future__ import annotations

import json

__all__ = ["loads"]


def loads(text):
    """``json.loads(text)``, raising ``ValueError`` for nesting too deep to decode."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
