"""Physical unit conversion for lengths (to micrometres) and times (to seconds)."""

from __future__ import annotations

_LENGTH_UM = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micrometers": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
}

_TIME_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "ns": 1e-9,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def length_to_um(value, unit: str | None = "µm") -> float | None:
    """Convert a length to micrometres.

    Parameters
    ----------
    value : float or str
        The length.
    unit : str or None
        Its unit (``"nm"``, ``"µm"``, ``"micron"``, ``"mm"`` ...); None means micrometres.

    Returns
    -------
    float or None
        The length in µm, or None when the value is missing, not positive or the unit unknown.
    """
    factor = _LENGTH_UM.get((unit or "um").strip().lower())
    number = _positive(value)
    if factor is None or number is None:
        return None
    return number * factor


def time_to_s(value, unit: str | None = "s") -> float | None:
    """Convert a time interval to seconds (None when missing, not positive or unit unknown)."""
    factor = _TIME_S.get((unit or "s").strip().lower())
    number = _positive(value)
    if factor is None or number is None:
        return None
    return number * factor


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not number > 0 or number == float("inf"):
        return None
    return number
