"""Hugging Face revision pins: the commit (and file digests) every later pull must get.

cellseek cannot ship commit hashes it could not verify (the machines it is built on have no
access to the hub), so pins work like a lock file: the first ``cellseek models pull`` of a
Hugging Face model on a machine records the commit it got and the SHA-256 of every file; every
later pull asks for that commit and refuses files whose digest differs. A registry revision
(``ModelSpec.revision``) wins over a recorded pin. The pins live in
``$CELLSEEK_PINS`` when set (a file a lab shares, so all its machines fetch the same weights), else
in ``<cache>/hub-pins.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from cellseek.config import default_cache_dir, env_path
from cellseek.errors import CellseekError

logger = logging.getLogger(__name__)

#: Environment variable naming a shared pins file.
PINS_ENV = "CELLSEEK_PINS"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class PinMismatchError(CellseekError):
    """A downloaded file is not the one its pin recorded."""


def pins_path() -> Path:
    """The pins file in force."""
    return env_path(PINS_ENV, folder=False) or default_cache_dir() / "hub-pins.json"


def read_pins(path: Path | None = None) -> dict[str, dict]:
    """Model name -> ``{"repo", "revision", "files": {name: sha256}}`` (empty when none).

    Raises
    ------
    CellseekError
        The file exists but is not a pins file.
    """
    path = path or pins_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CellseekError(f"{path}: not a cellseek pins file ({err})") from None
    if not isinstance(data, dict):
        raise CellseekError(f"{path}: not a cellseek pins file (a JSON object is expected)")
    out = {}
    for name, pin in data.items():
        if (isinstance(pin, dict) and isinstance(pin.get("revision"), str)
                and _COMMIT.match(pin["revision"]) and isinstance(pin.get("files", {}), dict)):
            out[str(name)] = pin
        else:
            logger.warning("%s: the pin of %r is malformed; ignored", path, name)
    return out


def revision_for(name: str, registry_revision: str = "") -> str | None:
    """The commit a pull of ``name`` must ask for: the registry's, else the recorded pin."""
    if registry_revision:
        return registry_revision
    pin = read_pins().get(name)
    return pin["revision"] if pin else None


def sha256_of(path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record(name: str, repo: str, revision: str, files: dict[str, Path]) -> None:
    """Check downloaded files against the pin of ``name``, or record a first pin.

    Parameters
    ----------
    name : str
        Registry name.
    repo : str
        Hugging Face repository.
    revision : str
        The commit the files came from (40 hex digits).
    files : dict
        File name in the repository -> the downloaded file.

    Raises
    ------
    PinMismatchError
        A file's digest differs from the one recorded for that commit (the file is deleted).
    """
    if not _COMMIT.match(revision or ""):
        logger.warning("%s: the hub reported no commit for %s; not pinned", name, repo)
        return
    path = pins_path()
    pins = read_pins(path)
    digests = {f: sha256_of(p) for f, p in files.items()}
    pin = pins.get(name)
    if pin and pin["revision"] == revision:
        for f, digest in digests.items():
            want = pin.get("files", {}).get(f)
            if want and want != digest:
                Path(files[f]).unlink(missing_ok=True)
                raise PinMismatchError(
                    f"{name}: {f} from {repo}@{revision[:10]} has SHA-256 {digest[:16]}..., the "
                    f"pin in {path} records {want[:16]}...; the file was deleted")
        digests = {**pin.get("files", {}), **digests}
    pins[name] = {"repo": repo, "revision": revision, "files": digests}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(pins, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    logger.info("%s pinned to %s@%s in %s", name, repo, revision[:10], path)
