"""The functions behind ``cellseek models list|pull|check`` (argument parsing lives in the CLI).

Only :func:`pull` touches the network, through the backend's own download mechanism: the Hugging
Face hub (``hf_hub_download``, at the pinned commit: the registry's revision, else the one the
first pull on this machine recorded, :mod:`cellseek.zoo.pins`) for timm, open_clip, transformers
and DinoBloom weights, and ``torch.hub.download_url_to_file`` for
single-file checkpoints (SAM, MobileSAM, micro-sam), each verified against its published digest.
With ``weights_dir`` the files go to ``<weights_dir>/<name>/`` instead, ready to copy to an
air-gapped machine.

Offline, :func:`pull` fails within seconds: the download host is probed once (a TCP connection,
3 s timeout, through the configured HTTPS proxy when there is one) before any download library
retries. Every name is tried, one line per model is reported, and a failed pull leaves no new
folder, lock or partial file behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from cellseek.errors import CellseekError
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.registry import PRESETS, get_spec, list_models
from cellseek.zoo.weights import (
    find_companion,
    find_in_package,
    local_filename,
    pull_hint,
    resolve_weights,
    torch_hub_dir,
    weights_available,
)

logger = logging.getLogger(__name__)

#: Seconds to wait for a download host before calling the network unreachable.
PROBE_TIMEOUT_S = 3.0
_HF_HOST = "huggingface.co"


class NetworkUnavailableError(CellseekError):
    """The download host cannot be reached (offline, firewall, DNS)."""


# -- list ------------------------------------------------------------------------------------
def _format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def model_source(spec: ModelSpec, weights_dir=None) -> tuple[bool, str]:
    """``(present, where)``: the weights file found on this machine, or where pull gets it."""
    if not spec.needs_weights:
        return True, "built in"
    ok, where = weights_available(spec, weights_dir)
    if ok:
        return True, where
    repo = getattr(spec, "hub_repo", "")
    if repo:
        rev = getattr(spec, "revision", "")
        return False, f"would pull hf://{repo}" + (f"@{rev[:10]}" if rev else "")
    dist = getattr(spec, "package_dist", "")
    if dist and not getattr(spec, "url", ""):
        return False, f"pip install {dist}"
    return False, f"would pull {getattr(spec, 'url', '') or spec.source}"


def list_models_table(weights_dir=None) -> str:
    """A text table of the zoo: name, backend, dim, input, licence, weights, source.

    Below the table, every preset with its models, which one new reference sets use and whether
    its weights are all here; then the presets that include non-commercial weights.
    """
    from cellseek.config import default_preset
    from cellseek.zoo.licences import non_commercial_presets

    rows = [("name", "backend", "dim", "input", "licence", "weights", "source")]
    for name in list_models():
        spec = get_spec(name)
        ok, where = model_source(spec, weights_dir)
        if not spec.needs_weights:
            present = "not needed"
        else:
            present = "yes" if ok else "no"
            if ok and getattr(spec, "decoder_filename", ""):
                has = find_companion(spec, resolve_weights(spec, weights_dir=weights_dir),
                                     weights_dir)
                present += " (+decoder)" if has else " (no decoder)"
        licence = spec.licence.split(" (")[0]
        if getattr(spec, "non_commercial", False):
            licence += " [non-commercial]"
        rows.append((name, spec.backend, str(spec.dim or "?"), f"{spec.input_size}px", licence,
                     present, where))
    lines = [_format_table(rows), "", "presets:"]
    present = {r[0] for r in rows[1:] if r[5] != "no"}
    default = default_preset()
    for preset, names in PRESETS.items():
        missing = [n for n in names if n not in present]
        state = "ready" if not missing else f"missing {', '.join(missing)}"
        mark = " (default for new reference sets)" if preset == default else ""
        lines.append(f"  {preset}{mark}: {', '.join(names)} [{state}]")
    for preset, names in non_commercial_presets().items():
        lines.append(f"warning: preset {preset!r} includes non-commercial weights "
                     f"({', '.join(names)}): not for commercial use")
    return "\n".join(lines)


# -- pull ------------------------------------------------------------------------------------
def _proxy_for(scheme: str) -> str | None:
    for var in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def check_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`NetworkUnavailableError` unless a TCP connection to ``url``'s host (or
    to the configured proxy) opens within ``timeout`` seconds."""
    parsed = urlparse(url if "://" in url else f"https://{url}")
    proxy = _proxy_for(parsed.scheme or "https")
    target = urlparse(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else parsed
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        via = f" (proxy {proxy})" if proxy else ""
        raise NetworkUnavailableError(
            f"cannot reach {host}{via}: {exc.strerror or exc}"
        ) from None


def _snapshot_dirs(paths) -> set[Path]:
    return {p for p in paths if p.exists()}


def _remove_new(paths, existed: set[Path]) -> None:
    """Delete the folders in ``paths`` that did not exist before a failed pull."""
    for path in paths:
        if path not in existed and path.exists():
            shutil.rmtree(path, ignore_errors=True)
    for path in paths:  # a folder that existed keeps its files, but not locks and partials
        if path in existed and path.is_dir():
            for junk in [*path.rglob("*.lock"), *path.rglob("*.incomplete")]:
                junk.unlink(missing_ok=True)


def _hf_paths(spec: ModelSpec, weights_dir) -> list[Path]:
    """Folders a Hugging Face download may create (to clean up after a failure)."""
    if weights_dir is not None:
        return [Path(weights_dir) / spec.name]
    from huggingface_hub import constants

    repo_dir = "models--" + spec.hub_repo.replace("/", "--")
    cache = Path(constants.HF_HUB_CACHE)
    return [cache / repo_dir, cache / ".locks" / repo_dir]


def _download_hf(spec: ModelSpec, weights_dir) -> Path:
    from huggingface_hub import hf_hub_download

    from cellseek.zoo.pins import record, revision_for

    repo = spec.hub_repo
    revision = revision_for(spec.name, getattr(spec, "revision", ""))
    local_dir = str(Path(weights_dir) / spec.name) if weights_dir is not None else None
    errors = []
    for filename in spec.hub_files:
        try:
            path = hf_hub_download(repo, filename, local_dir=local_dir, revision=revision)
        except Exception as exc:  # noqa: BLE001 - try the next candidate, report all
            errors.append(f"{filename}: {str(exc).splitlines()[0] if str(exc) else exc}")
            continue
        files = {filename: Path(path)}
        for extra in getattr(spec, "hub_extra", ()):
            files[extra] = Path(hf_hub_download(repo, extra, local_dir=local_dir,
                                                revision=revision))
        record(spec.name, repo, revision or _commit_of(repo, Path(path)), files)
        return Path(path)
    raise CellseekError(
        f"could not download from https://huggingface.co/{repo}: " + "; ".join(errors)
    )


def _commit_of(repo: str, path: Path) -> str:
    """The commit a hub download came from (the snapshot folder, else asked of the hub)."""
    if path.parent.parent.name == "snapshots":
        return path.parent.name
    try:
        from huggingface_hub import HfApi

        return str(HfApi().model_info(repo).sha or "")
    except Exception as exc:  # noqa: BLE001 - the files are there; only the pin is missing
        logger.warning("could not read the commit of %s (%s); not pinned", repo, exc)
        return ""


def _download_file(url: str, target: Path, checksum: str, model: str) -> Path:
    """Download ``url`` to ``target`` (atomically) and verify ``checksum``."""
    import torch.hub

    from cellseek.zoo.checksums import verify_checksum

    if target.is_file():
        verify_checksum(target, checksum, model=model)
        return target
    tmp = target.with_name(f".{target.name}.part")
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=True)
        verify_checksum(tmp, checksum, model=model)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _url_paths(spec: ModelSpec, weights_dir) -> list[Path]:
    folder = (Path(weights_dir) / spec.name if weights_dir is not None
              else torch_hub_dir() / "checkpoints")
    return [folder]


def pull(name: str, weights_dir=None) -> Path | None:
    """Download a model's weights through its backend's own mechanism and verify them.

    Parameters
    ----------
    name : str
        Registry name.
    weights_dir : path, optional
        Put the files in ``<weights_dir>/<name>/`` instead of the standard cache.

    Returns
    -------
    Path or None
        The weights file, or None when the model needs none.

    Raises
    ------
    NetworkUnavailableError
        The download host cannot be reached (within :data:`PROBE_TIMEOUT_S`).
    ChecksumMismatchError
        The file is not the published one (it is deleted).
    CellseekError
        Unknown model, or the download failed (the message says how to do it by hand).
    """
    spec = get_spec(name)
    if not spec.needs_weights:
        logger.info("%s needs no weights", name)
        return None
    repo, url = getattr(spec, "hub_repo", ""), getattr(spec, "url", "")
    packaged = find_in_package(spec)
    if packaged is not None:
        logger.info("%s: its weights came with pip (%s)", name, packaged.path)
        return packaged.path
    if getattr(spec, "package_dist", "") and not url:
        raise CellseekError(f"{name}: its weights ship inside a Python package, not a download: "
                            f"{pull_hint(spec)}")
    if not (repo or url):
        raise CellseekError(f"no download source is registered for {name!r}; see {spec.source}")
    check_reachable(f"https://{_HF_HOST}" if repo else url)  # before anything is created
    paths = _hf_paths(spec, weights_dir) if repo else _url_paths(spec, weights_dir)
    if weights_dir is not None:
        paths.append(Path(weights_dir))  # a weights folder this pull created goes too
    existed = _snapshot_dirs(paths)
    try:
        if repo:
            path = _download_hf(spec, weights_dir)
        else:
            folder = paths[0]
            folder.mkdir(parents=True, exist_ok=True)
            path = _download_file(url, folder / local_filename(spec), spec.checksum, name)
            if getattr(spec, "decoder_url", ""):
                _download_file(spec.decoder_url, folder / spec.decoder_filename,
                               spec.decoder_checksum, f"{name} decoder")
    except Exception:
        _remove_new(paths, existed)
        raise
    logger.info("%s: weights at %s", name, path)
    return path


def expand_names(names) -> list[str]:
    """Model names with every preset name replaced by its models (order kept, no repeats)."""
    out: list[str] = []
    for name in names:
        out.extend(PRESETS.get(name, (name,)))
    return list(dict.fromkeys(out))


def pull_many(names, weights_dir=None, *, echo=print) -> int:
    """Pull every model (presets expanded), one line each; the exit code (0 all ok, else 1).

    A failure never stops the others: each name is tried and reported.
    """
    failed = 0
    for name in expand_names(names):
        start = time.perf_counter()
        try:
            path = pull(name, weights_dir=weights_dir)
        except CellseekError as exc:
            failed += 1
            spec = _spec_or_none(name)
            how = f"; by hand: {_manual(spec)}" if spec is not None else ""
            echo(f"FAILED {name}: {exc}{how}")
            continue
        except Exception as exc:  # noqa: BLE001 - report every model, never stop at one
            failed += 1
            echo(f"FAILED {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        took = time.perf_counter() - start
        echo(f"ok     {name}: " + (f"{path} ({took:.0f} s)" if path else "no weights needed"))
    return 1 if failed else 0


def _spec_or_none(name: str):
    try:
        return get_spec(name)
    except CellseekError:
        return None


def _manual(spec: ModelSpec) -> str:
    repo = getattr(spec, "hub_repo", "")
    if repo:
        return f"https://huggingface.co/{repo} -> $CELLSEEK_WEIGHTS_DIR/{spec.name}/"
    return f"{spec.url} -> $CELLSEEK_WEIGHTS_DIR/{spec.name}/{local_filename(spec)}"


# -- check -----------------------------------------------------------------------------------
def present_models(weights_dir=None) -> list[str]:
    """Models whose weights are on this machine (or need none)."""
    return [n for n in list_models() if weights_available(n, weights_dir)[0]]


def check(names=None, weights_dir=None, device: str = "auto") -> list[tuple[str, bool, str]]:
    """Load each model once and embed a dummy crop.

    Parameters
    ----------
    names : iterable of str, optional
        Models (or presets) to check; default: every model present on this machine.
    weights_dir : path, optional
    device : str

    Returns
    -------
    list of (name, ok, detail)
        ``detail`` gives load and embed times and the output dimension, or the error.
    """
    from cellseek.zoo import load_embedder

    names = expand_names(names) if names else present_models(weights_dir)
    rng = np.random.default_rng(0)
    crops = rng.random((2, 64, 64, 3), dtype=np.float32)
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[:, 16:48, 16:48] = True
    report = []
    for name in names:
        try:
            spec = get_spec(name)
            t0 = time.perf_counter()
            embedder = load_embedder(name, weights_dir=weights_dir, device=device)
            t1 = time.perf_counter()
            out = embedder.embed(crops, masks)
            t2 = time.perf_counter()
        except CellseekError as exc:
            report.append((name, False, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - report every model, never stop at one
            logger.debug("check %s failed", name, exc_info=True)
            report.append((name, False, f"{type(exc).__name__}: {exc}"))
            continue
        problems = []
        if out.shape != (2, spec.dim):
            problems.append(f"output shape {out.shape}, expected (2, {spec.dim})")
        if out.dtype != np.float32:
            problems.append(f"dtype {out.dtype}")
        if not np.all(np.isfinite(out)):
            problems.append("non-finite values")
        detail = (
            f"dim {out.shape[-1]}, load {t1 - t0:.1f} s, embed 2 crops {(t2 - t1) * 1e3:.0f} ms"
            f" on {getattr(embedder, 'device', 'cpu')}"
        )
        report.append((name, not problems, "; ".join(problems + [detail])))
    return report


def check_many(names=None, weights_dir=None, *, echo=print) -> int:
    """Run :func:`check` and print one line per model; the exit code."""
    rows = check(names, weights_dir=weights_dir)
    if not rows:
        echo("no model weights on this machine yet (see `cellseek models list`)")
    for name, ok, detail in rows:
        echo(f"{'ok     ' if ok else 'FAILED '}{name}: {detail}")
    return 0 if all(ok for _, ok, _ in rows) else 1
