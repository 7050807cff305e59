"""The functions behind ``cellseek models list|pull|check`` (argument parsing lives in the CLI).

Only :func:`pull` touches the network, through the backend's own download mechanism: the Hugging
Face hub (``hf_hub_download``) for timm, open_clip, transformers and DinoBloom weights, and
``torch.hub.download_url_to_file`` into torch hub's checkpoints folder for single-file
checkpoints (SAM). With ``weights_dir`` the files go to ``<weights_dir>/<name>/`` instead, ready
to copy to an air-gapped machine.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from cellseek.errors import CellseekError
from cellseek.zoo.base import ModelSpec
from cellseek.zoo.registry import get_spec, list_models
from cellseek.zoo.weights import torch_hub_dir, weights_available

logger = logging.getLogger(__name__)


def _format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_models_table(weights_dir=None) -> str:
    """A text table of the zoo: name, backend, dim, input, licence, weights present."""
    rows = [("name", "backend", "dim", "input", "licence", "weights", "description")]
    for name in list_models():
        spec = get_spec(name)
        if not spec.needs_weights:
            present = "not needed"
        else:
            ok, where = weights_available(spec, weights_dir)
            present = f"yes ({where.rsplit('(', 1)[-1].rstrip(')')})" if ok else "no"
        licence = spec.licence.split(" (")[0]
        rows.append(
            (
                name,
                spec.backend,
                str(spec.dim or "?"),
                f"{spec.input_size}px",
                licence,
                present,
                spec.description,
            )
        )
    return _format_table(rows)


def _download_hf(spec: ModelSpec, weights_dir) -> Path:
    from huggingface_hub import hf_hub_download

    repo = spec.hub_repo
    local_dir = str(Path(weights_dir) / spec.name) if weights_dir is not None else None
    errors = []
    for filename in spec.hub_files:
        try:
            path = hf_hub_download(repo, filename, local_dir=local_dir)
        except Exception as exc:  # noqa: BLE001 - try the next candidate, report all
            errors.append(f"{filename}: {exc}")
            continue
        for extra in getattr(spec, "hub_extra", ()):
            hf_hub_download(repo, extra, local_dir=local_dir)
        return Path(path)
    raise CellseekError(
        f"could not download the weights of {spec.name!r} from https://huggingface.co/{repo}: "
        + "; ".join(errors)
        + ". Check the internet connection (and that HF_HUB_OFFLINE is not set), or download "
        "the file by hand (see `cellseek models list` and docs/models.md)."
    )


def _download_url(spec: ModelSpec, weights_dir) -> Path:
    import torch.hub

    filename = spec.url.split("?")[0].rsplit("/", 1)[-1]
    folder = (
        Path(weights_dir) / spec.name
        if weights_dir is not None
        else (torch_hub_dir() / "checkpoints")
    )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    if target.is_file():
        return target
    try:
        torch.hub.download_url_to_file(spec.url, str(target), progress=True)
    except Exception as exc:  # noqa: BLE001
        raise CellseekError(
            f"could not download the weights of {spec.name!r} from {spec.url}: {exc}. "
            f"Download it by hand and put it in {folder}."
        ) from exc
    return target


def pull(name: str, weights_dir=None) -> Path | None:
    """Download a model's weights through its backend's own mechanism.

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
    CellseekError
        Unknown model, or the download failed (the message says how to do it by hand).
    """
    spec = get_spec(name)
    if not spec.needs_weights:
        logger.info("%s needs no weights", name)
        return None
    if os.environ.get("HF_HUB_OFFLINE") and getattr(spec, "hub_repo", ""):
        logger.warning("HF_HUB_OFFLINE is set; the download of %s will probably fail", name)
    if getattr(spec, "hub_repo", ""):
        path = _download_hf(spec, weights_dir)
    elif getattr(spec, "url", ""):
        path = _download_url(spec, weights_dir)
    else:
        raise CellseekError(f"no download source is registered for {name!r}; see {spec.source}")
    logger.info("%s: weights at %s", name, path)
    return path


def check(names=None, weights_dir=None, device: str = "auto") -> list[tuple[str, bool, str]]:
    """Load each model once and embed a dummy crop.

    Parameters
    ----------
    names : iterable of str, optional
        Models to check (default: every registered model).
    weights_dir : path, optional
    device : str

    Returns
    -------
    list of (name, ok, detail)
        ``detail`` gives load and embed times and the output dimension, or the error.
    """
    from cellseek.zoo import load_embedder

    names = list(names) if names else list(list_models())
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
