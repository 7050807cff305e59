"""The value rules of a store: ONE definition of what cellseek writes and what it accepts.

Every rule here is applied twice, from the same constants: in Python when cellseek writes a
value (so a store can never refuse itself on the next open), and as SQL conditions when a store
made elsewhere is opened (:mod:`cellseek.store.trust`). ``docs/store.md`` lists them in one
table ("A store from another lab").

- **Texts** (labels, paths, sources, devices, notes): UTF-8 of at most
  :attr:`Limits.max_text_bytes` bytes, measured in bytes (SQLite's ``length()`` of a text stops
  at the first NUL, so a 10 MB label behind a NUL would pass a character count), with no NUL
  character.
- **Class labels** (confirmed labels, suggestions, best labels): texts that are not blank and
  carry no surrounding white space (cellseek strips it when it writes one).
- **Model weights**: finite, from 0 to :data:`MAX_WEIGHT`.
"""

from __future__ import annotations

import math

from cellseek.config import current_limits
from cellseek.errors import StoreError

#: Largest fusion weight of a model (weights are normalised to sum 1 when computed).
MAX_WEIGHT = 1e6
#: Longest model, metadata key or saved-array name, in bytes.
MAX_NAME_BYTES = 200
#: White space a label may not start or end with, as SQLite's ``trim`` sees it (Python's
#: ``str.strip`` removes these and more when cellseek writes a label).
SQL_WHITESPACE = " \t\n\r\x0b\x0c"


class ValueRuleError(StoreError, ValueError):
    """A value breaks a rule of the store (an empty or too long label, a NUL character ...)."""


def text_problem(value, limit: int | None = None) -> str | None:
    """Why ``value`` cannot be a text of a store (None when it can).

    Parameters
    ----------
    value : object
        The candidate text.
    limit : int, optional
        Largest size in UTF-8 bytes (default :attr:`Limits.max_text_bytes`).
    """
    limit = current_limits().max_text_bytes if limit is None else limit
    if not isinstance(value, str):
        return f"it is a {type(value).__name__}, not a text"
    if "\x00" in value:
        return "it holds a NUL character"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if size > limit:
        return f"it is {size} bytes long, more than the limit of {limit}"
    return None


def label_problem(value) -> str | None:
    """Why ``value`` cannot be a class label as stored (None when it can)."""
    problem = text_problem(value)
    if problem:
        return problem
    if not value.strip():
        return "it is empty or blank"
    if value != value.strip():
        return "it starts or ends with white space"
    return None


def check_text(value, what: str, limit: int | None = None) -> str:
    """``value`` when it is a valid store text, else :class:`ValueRuleError` naming ``what``."""
    problem = text_problem(value, limit)
    if problem:
        raise ValueRuleError(f"{what} {_show(value)} cannot be stored: {problem}")
    return value


def check_label(label) -> str:
    """A class label with surrounding white space removed; :class:`ValueRuleError` when it is
    empty, blank, too long or holds a NUL character."""
    stripped = label.strip() if isinstance(label, str) else label
    problem = label_problem(stripped)
    if problem:
        raise ValueRuleError(f"the class name {_show(label)} cannot be used: {problem}")
    return stripped


def clip_text(value: str, limit: int | None = None) -> str:
    """``value`` shortened (with an ellipsis in the middle) to fit the text rule; NULs dropped.

    For free texts cellseek composes itself (audit notes naming a file), never for labels.
    """
    limit = current_limits().max_text_bytes if limit is None else limit
    value = value.replace("\x00", "")
    if len(value.encode("utf-8", "replace")) <= limit:
        return value.encode("utf-8", "replace").decode("utf-8")
    keep = max(limit // 2 - 4, 0)
    raw = value.encode("utf-8", "replace")
    return (raw[:keep].decode("utf-8", "ignore") + " ... "
            + raw[-keep:].decode("utf-8", "ignore"))


def check_weight(name: str, weight) -> float:
    """A model weight as float; :class:`ValueRuleError` unless finite and in 0..MAX_WEIGHT."""
    w = float(weight)
    if not (math.isfinite(w) and 0 <= w <= MAX_WEIGHT):
        raise ValueRuleError(f"the weight of model {name!r} must be a finite number from 0 to "
                             f"{MAX_WEIGHT:g}, got {w}")
    return w


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...{text[-10:]} ({len(text)} characters)"


# ---------------------------------------------------------------------------- SQL forms


def sql_bad_text(col: str, limit: int | None = None, *, nullable: bool = False) -> str:
    """SQL that is true for a row whose ``col`` breaks :func:`text_problem` (bytes, NUL)."""
    limit = current_limits().max_text_bytes if limit is None else int(limit)
    raw = f"CAST({col} AS BLOB)"
    bad = f"(typeof({col}) != 'text' OR length({raw}) > {limit} OR instr({raw}, x'00') > 0)"
    return f"({col} IS NOT NULL AND {bad})" if nullable else bad


def sql_bad_label(col: str, *, nullable: bool = False) -> str:
    """SQL that is true for a row whose ``col`` breaks :func:`label_problem`."""
    ws = "'" + SQL_WHITESPACE + "'"
    bad = (f"({sql_bad_text(col)} OR trim({col}, {ws}) = '' "
           f"OR {col} != trim({col}, {ws}))")
    return f"({col} IS NOT NULL AND {bad})" if nullable else bad
