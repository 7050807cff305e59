"""Exceptions a user can cause; each message names the file or model and the problem."""

from __future__ import annotations


class CellseekError(Exception):
    """Base class of every error cellseek raises on bad input or missing resources."""


class ImageReadError(CellseekError):
    """An image file could not be read, or holds no usable image.

    Parameters
    ----------
    path : str
        The offending file (or folder).
    problem : str
        What is wrong, in plain words.
    """

    def __init__(self, path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingWeightsError(CellseekError):
    """The weights of a model are not on this machine.

    Parameters
    ----------
    model : str
        Model name from the registry.
    hint : str
        How to get them (a command, a URL, a folder to put them in).
    """

    def __init__(self, model: str, hint: str) -> None:
        self.model = model
        self.hint = hint
        super().__init__(f"weights for model {model!r} are not available on this machine. {hint}")


class StoreError(CellseekError):
    """The reference store could not be read or written."""


class IncompatibleStoreError(StoreError):
    """A reference store was made with another model set or a newer schema."""


class StoreExistsError(StoreError):
    """A reference store (or another file) already exists where a new one was to be created."""


class ConfigError(CellseekError):
    """A setting, such as a ``CELLSEEK_*`` environment variable, holds a value cellseek cannot use.

    Parameters
    ----------
    name : str
        The setting (for an environment variable, its name).
    value : str
        The value found.
    expected : str
        What is expected instead, in plain words.
    """

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"${name}={value!r}: {expected}")
